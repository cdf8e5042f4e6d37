"""One simulated archive, its point-in-time dataset and a trained model, shared by the model tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from equilibrate.model import runs
from equilibrate.settings import Settings
from equilibrate.storage.archive_store import ArchiveStore
from tests.model.simulated import simulated_archive

CUSTOMERS, DAYS = 2_000, 180


@dataclass(frozen=True)
class Trained:
    settings: Settings
    archive: ArchiveStore
    dataset: pa.Table
    run: runs.TrainingRun


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    root = tmp_path_factory.mktemp("model")
    settings = Settings(_env_file=None, data_dir=root / "data", model_registry_dir=root / "registry")
    archive = simulated_archive(root / "data" / "archive", CUSTOMERS, DAYS)
    path, _rows, _rate = runs.build_dataset(settings)
    yield Trained(settings, archive, pq.read_table(path), runs.train_pipeline(settings))
