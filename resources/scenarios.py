"""Where the contrastive trait scenarios live."""

import dagster as dg
from pydantic import Field


class ScenarioSource(dg.ConfigurableResource):
    """``{root}/{category}/{trait}/`` folders of scenario files (env PERSONA_SCENARIOS_ROOT)."""

    root: str = Field(description="Folder of scenario categories (env PERSONA_SCENARIOS_ROOT).")
