"""The service's options and limits: one frozen model, passed to every uvicorn worker through the environment."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from moeplan.errors import UsageError

ENV = "MOEPLAN_SERVE_SETTINGS"  # uvicorn starts workers by import string; they read their settings here


class Settings(BaseModel):
    """What `moeplan serve` was started with; every limit keeps one request from taking the service down."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    storage: str = Field("sqlite:///moeplan.db", description="the study database; jobs and the plan cache live in it")
    token_file: Path | None = Field(None, description="bearer tokens, one a line; none: no authentication")
    dashboard_url: str | None = Field(None, description="optuna-dashboard serving the same storage, for study links")
    max_body_bytes: PositiveInt = Field(1_000_000, description="larger request bodies get 413")
    min_flops: PositiveFloat = Field(1e15, description="smallest budget a request may ask for")
    max_flops: PositiveFloat = Field(1e28, description="largest budget a request may ask for")
    max_space: PositiveFloat = Field(2e10, description="most configurations in one plan's buildable space")
    max_verify_space: PositiveFloat = Field(2e9, description="most configurations a --verify may enumerate")
    max_verify: PositiveInt = Field(1, description="concurrent --verify plans per worker process; more get 429")
    max_trials: PositiveInt = Field(200, description="most Optuna trials one plan request may ask for")
    max_budgets: PositiveInt = Field(41, description="most budgets in one frontier job")
    job_lease_seconds: PositiveFloat = Field(15.0, description="a job whose worker sends no heartbeat this long "
                                                               "is taken over by another worker")
    job_attempts: PositiveInt = Field(2, description="runs of a job before a lost worker marks it failed")
    wait_seconds: PositiveFloat = Field(600.0, description="longest wait for an identical plan another worker "
                                                           "is computing")

    def tokens(self) -> set[str]:
        """The accepted bearer tokens (empty: authentication off)."""
        if self.token_file is None:
            return set()
        try:
            lines = self.token_file.read_text().splitlines()
        except OSError as err:
            raise UsageError(f"--token-file {self.token_file}: {err.strerror or err}") from None
        tokens = {line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")}
        if not tokens:
            raise UsageError(f"--token-file {self.token_file}: no tokens in it (one a line)")
        return tokens

    @classmethod
    def from_env(cls) -> Settings:
        return cls.model_validate_json(os.environ[ENV]) if ENV in os.environ else cls()
