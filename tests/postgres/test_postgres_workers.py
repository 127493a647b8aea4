"""The two-worker study against a real PostgreSQL server (the multi-machine setup)."""

from __future__ import annotations

import optuna

from tests.integration.test_optuna_workers import check_two_workers


def test_two_workers_share_one_postgresql_study(postgres_url, faces_dir, session_cache, tmp_path):
    check_two_workers(tmp_path, faces_dir, session_cache, storage=postgres_url)
    assert optuna.get_all_study_names(postgres_url) == ["two"]
    assert not (tmp_path / "optuna.db").exists()  # nothing fell back to the local default
