"""Running Equilibrate: embedded services, the supervisor behind `up`, health and `status`."""
