"""Partition discovery: the sensor, the CLI sync, collisions between models and the real 275/240 names."""

import json

import dagster as dg

from steering_assets.partitions.personas import persona_discovery_sensor, sync_partitions
from steering_assets.resources.rollouts import PersonaRollouts
from tests.conftest import response_row, write_persona


def tick(instance, data_root, cursor=None):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"rollouts": PersonaRollouts(data_root=str(data_root))}
    )
    result = persona_discovery_sensor(context)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def observed(result):
    return {(o.asset_key.to_user_string(), o.partition): o.tags["dagster/data_version"] for o in result.asset_events}


def test_sensor_adds_new_files_as_partitions_and_versions_changed_ones(tmp_path):
    write_persona(tmp_path, "roles_240", "pirate", [response_row()], {"pos_p0_q0": 3})
    write_persona(tmp_path, "roles_240", "0_default", [response_row()])
    write_persona(tmp_path, "traits_240", "humorous", [response_row()], {"pos_p0_q0": 90})
    with dg.instance_for_test() as instance:
        first = tick(instance, tmp_path)
        # A baseline role file is a partition too: its role vector is the default side of the assistant axis.
        assert instance.get_dynamic_partitions("roles") == ["model-a/pirate", "model-a/0_default"]
        assert instance.get_dynamic_partitions("traits") == ["model-a/humorous"]
        assert set(observed(first)) == {("roles/persona_rollouts", "model-a/pirate"), ("roles/persona_rollouts", "model-a/0_default"),
                                        ("traits/persona_rollouts", "model-a/humorous")}

        second = tick(instance, tmp_path, first.cursor)
        assert not second.dynamic_partitions_requests and not second.asset_events

        # A new file is a new partition on the next tick, with no code change.
        write_persona(tmp_path, "roles_240", "chef", [response_row()], {"pos_p0_q0": 2})
        third = tick(instance, tmp_path, second.cursor)
        assert instance.get_dynamic_partitions("roles") == ["model-a/pirate", "model-a/0_default", "model-a/chef"]
        assert set(observed(third)) == {("roles/persona_rollouts", "model-a/chef")}

        # Editing a score file changes that persona's data version only.
        score_file = tmp_path / "model-a" / "roles_240" / "extract_scores" / "pirate.json"
        score_file.write_text(json.dumps({"pos_p0_q0": 1}))
        fourth = tick(instance, tmp_path, third.cursor)
        versions = observed(fourth)
        assert set(versions) == {("roles/persona_rollouts", "model-a/pirate")}
        assert versions[("roles/persona_rollouts", "model-a/pirate")] != observed(first)[("roles/persona_rollouts", "model-a/pirate")]


def test_two_source_models_never_collide(tmp_path):
    for model in ("gemma-2-27b", "qwen-3-32b"):
        write_persona(tmp_path, "roles_240", "pirate", [response_row()], {"pos_p0_q0": 3}, model=model)
    with dg.instance_for_test() as instance:
        sync_partitions(instance, tmp_path)
        # Each model's default assistant too: a persona-subspace tree without a baseline file keeps it in the role files.
        assert instance.get_dynamic_partitions("roles") == ["gemma-2-27b/pirate", "qwen-3-32b/pirate", "gemma-2-27b/default",
                                                            "qwen-3-32b/default"]


def test_full_scale_real_persona_names(tmp_path, shared_persona_names):
    roles, traits = shared_persona_names
    for name in roles:
        write_persona(tmp_path, "roles_240", name, [response_row()], {"pos_p0_q0": 3}, model="gemma-2-27b")
    for name in traits:
        write_persona(tmp_path, "traits_240", name, [response_row()], {"pos_p0_q0": 80}, model="gemma-2-27b")
    with dg.instance_for_test() as instance:
        result = tick(instance, tmp_path)
        assert len(instance.get_dynamic_partitions("roles")) == 275 + 1  # and the default assistant's partition
        assert len(instance.get_dynamic_partitions("traits")) == 240
        assert len(result.asset_events) == 275 + 240
        assert not tick(instance, tmp_path, result.cursor).dynamic_partitions_requests
        assert sync_partitions(instance, tmp_path).new_keys == {"roles": [], "traits": []}
