"""The concept_features job in Dagster: partitions from concept files, every asset with its metadata."""

import dagster as dg

from steering_assets.core.progress import failure_message
from steering_assets.definitions import build_definitions
from steering_assets.formats.concepts import read_concept_sentences
from steering_assets.partitions.concepts import concept_discovery_sensor, sync_concept_partitions
from steering_assets.resources.concepts import ConceptSentences


def test_concept_job_materialises_every_stage(demo_workspace, tmp_path):
    defs = build_definitions(str(demo_workspace.data_root), str(tmp_path / "artifacts"), str(demo_workspace.model_path),
                             str(demo_workspace.concepts_root), str(demo_workspace.sae_config))
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"concepts": ConceptSentences(root=str(demo_workspace.concepts_root))})
        result = concept_discovery_sensor(context)
        assert list(result.dynamic_partitions_requests[0].partition_keys) == ["humorous", "optimistic"]
        assert sync_concept_partitions(instance, demo_workspace.concepts_root) == ["humorous", "optimistic"]
        config = {"ops": {"concepts__trait_classifiers": {"config": {"models": ["ridge", "logistic"], "folds": 4}}}}
        run = defs.resolve_job_def("concept_features").execute_in_process(instance=instance, partition_key="humorous", run_config=config)
        assert run.success
        def latest(asset):
            return instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(["concepts", asset]), asset_partitions=["humorous"]), limit=1
            ).records[0].asset_materialization.metadata

        assert latest("sentence_features")["sentences"].value == len(
            read_concept_sentences(demo_workspace.concepts_root / "humorous.jsonl"))
        assert "pearson" in latest("top_features")["ranked_features"].value
        assert any(str(v.value).startswith("![") for v in latest("feature_activation_graphs").values())
        assert "hidden-to-concept" in latest("trait_classifiers")["comparison"].value

        bad = {"ops": {"concepts__classifier_datasets": {"config": {"specs": [{"strategy": "hidden-to-feature", "layers": "2",
                                                                                "target_layer": 2, "target_feature": 9999}]}}}}
        run = defs.resolve_job_def("concept_features").execute_in_process(
            instance=instance, partition_key="humorous", run_config=bad, raise_on_error=False)
        failure = next(e for e in run.all_events if e.is_step_failure)
        assert "target feature 9999 is beyond the SAE width 64" in failure_message(failure)
