"""The schema against ECS itself: every field marked ECS is mapped as ECS maps it.

ECS's mappings of the fields we write are vendored in tests/data/ecs_fields.json (from ECS's
own generated component templates).  A field marked ``ecs`` must exist there with the same
type, ``ignore_above`` and multi-fields; a field ECS does not define must not claim to be ECS.
One deliberate difference: ``@timestamp`` is ``date_nanos`` (ECS says ``date``), so records
made within one millisecond keep their order (microseconds) in Discover.
"""

from __future__ import annotations

import json
from pathlib import Path

from amebo_logging import schema
from amebo_logging.ship import elastic_setup

ECS = json.loads((Path(__file__).parent / "data" / "ecs_fields.json").read_text())
#: Where we map a field differently from ECS on purpose, and why (the README says the same).
DELIBERATE = {"@timestamp": ("date", "date_nanos")}


def _mapped(name: str) -> dict:
    node = elastic_setup.component_mappings()["template"]["mappings"]["properties"]
    *parents, leaf = name.split(".")
    for part in parents:
        node = node[part]["properties"]
    return node[leaf]


def test_every_ecs_field_is_mapped_as_ecs_maps_it():
    ecs_fields = [f for f in schema.FIELDS if f.origin == "ecs"]
    assert ecs_fields, "the schema marks no field as ECS"
    for f in ecs_fields:
        assert f.name in ECS["fields"], f"{f.name} is marked ecs, but ECS does not define it"
        want = dict(ECS["fields"][f.name])
        got = _mapped(f.name)
        if f.name in DELIBERATE:
            ecs_type, ours = DELIBERATE[f.name]
            assert (want.pop("type"), got["type"]) == (ecs_type, ours)
            got = {k: v for k, v in got.items() if k != "type"}
        assert got == want, f"{f.name}: ours {got}, ECS {want}"


def test_fields_ecs_does_not_define_do_not_claim_to_be_ecs():
    for f in schema.FIELDS:
        if f.name not in ECS["fields"]:
            assert f.origin != "ecs", f"{f.name} is not an ECS field: give its real origin"
    assert schema.field("log.offset").origin == "filebeat"
    assert {f.name for f in schema.FIELDS if f.origin != "ecs" and not f.name.startswith("amebo.")} == set(
        ECS["not_ecs"]
    )


def test_full_text_multi_fields_where_ecs_has_them():
    for name in ("error.stack_trace", "url.full", "user_agent.original"):
        assert _mapped(name)["fields"] == {"text": {"type": "match_only_text"}}
    with_text = {n for n, spec in ECS["fields"].items() if "fields" in spec}
    assert {f.name for f in schema.FIELDS if f.text} == with_text & {f.name for f in schema.FIELDS}
