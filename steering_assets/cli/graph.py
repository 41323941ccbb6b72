"""The asset graph as a Mermaid flowchart of asset groups, rendered from the real definitions.

``python -m steering_assets.cli.graph`` prints it; the README's picture is this output (a test keeps
them equal). Roles and traits share one node per group (``<kind>_steering`` for both kinds).
"""

from __future__ import annotations

import re
from collections import defaultdict

import dagster as dg

# Display order of the groups, bottom of the lineage first.
ORDER = ("models", "kind_rollouts", "kind_personas", "kind_steering", "concept_features", "vetting")


def _group(name: str) -> str:
    return re.sub(r"^(roles|traits)_", "kind_", name)


def asset_graph_mermaid(defs: dg.Definitions) -> str:
    graph = defs.resolve_asset_graph()
    members: dict[str, set[str]] = defaultdict(set)
    edges: set[tuple[str, str]] = set()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        group = _group(node.group_name or "default")
        members[group].add(key.path[-1])
        for parent in node.parent_keys:
            parent_group = _group(graph.get(parent).group_name or "default")
            if parent_group != group:
                edges.add((parent_group, group))
    order = [g for g in ORDER if g in members] + sorted(set(members) - set(ORDER))
    ids = {group: f"G{index}" for index, group in enumerate(order)}
    lines = ["flowchart LR"]
    for group in order:
        title = group.replace("kind_", "roles_/traits_")
        lines.append(f'  {ids[group]}["{title}<br/>{", ".join(sorted(members[group]))}"]')
    for source, target in sorted(edges, key=lambda e: (order.index(e[0]), order.index(e[1]))):
        lines.append(f"  {ids[source]} --> {ids[target]}")
    return "\n".join(lines)


if __name__ == "__main__":
    from steering_assets.core.settings import Settings
    from steering_assets.definitions import build_definitions

    print(asset_graph_mermaid(build_definitions(settings=Settings())))
