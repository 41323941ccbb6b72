import pytest

from steering_assets.core.names import InvalidNameError, validate_name
from steering_assets.formats.rollouts import ROLES, TRAITS, PersonaRef, discover_personas
from tests.conftest import response_row, write_persona


@pytest.mark.parametrize("name", ["accountant", "0_default", "gemma-2-27b", "qwen3.5-4b", "a+b"])
def test_plain_names_are_accepted(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "..", "../etc", "a/b", "a\\b", "x..y", ".hidden", "has space", "nul\x00"])
def test_names_that_could_escape_or_break_keys_are_rejected(name):
    with pytest.raises(InvalidNameError, match="name"):
        validate_name(name, "role name")


def test_partition_key_round_trip_and_rejection():
    ref = PersonaRef(ROLES, "gemma-2-27b", "accountant")
    assert ref.partition_key == "gemma-2-27b/accountant"
    assert PersonaRef.from_partition_key(ROLES, ref.partition_key) == ref
    with pytest.raises(InvalidNameError, match="not of the form"):
        PersonaRef.from_partition_key(ROLES, "accountant")
    with pytest.raises(InvalidNameError, match=r"'\.\.'"):
        PersonaRef.from_partition_key(ROLES, "model/../../etc")


def test_discovery_separates_baselines_and_keeps_models_apart(tmp_path):
    for model in ("model-a", "model-b"):
        for name in ("pirate", "0_default", "default"):
            write_persona(tmp_path, "roles_240", name, [response_row()], model=model)
    write_persona(tmp_path, "traits_240", "humorous", [response_row()], model="model-a")
    write_persona(tmp_path, "roles_240", "bad name", [response_row()], model="model-a")

    roles = discover_personas(tmp_path, ROLES)
    assert [r.partition_key for r in roles.personas] == ["model-a/pirate", "model-b/pirate"]
    assert sorted(r.partition_key for r in roles.baselines) == [
        "model-a/0_default", "model-a/default", "model-b/0_default", "model-b/default",
    ]
    assert len(roles.rejected) == 1 and "bad name" in str(roles.rejected[0][0])
    assert [r.partition_key for r in discover_personas(tmp_path, TRAITS).personas] == ["model-a/humorous"]


def test_missing_data_root_says_which_setting_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="PERSONA_DATA_ROOT"):
        discover_personas(tmp_path / "nowhere", ROLES)


def test_real_persona_names_are_all_valid_partitions(shared_persona_names):
    roles, traits = shared_persona_names
    assert len(roles) == 275 and len(traits) == 240
    keys = {PersonaRef(ROLES, "gemma-2-27b", name).partition_key for name in roles}
    keys |= {PersonaRef(TRAITS, "gemma-2-27b", name).partition_key for name in traits}
    assert len(keys) == 275 + 240 - len(set(roles) & set(traits))
