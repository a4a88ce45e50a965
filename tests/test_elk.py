"""The ELK view: templates and ILM from the schema, `setup`, Kibana objects, Logstash, compose."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import yaml

from amebo_logging import schema
from amebo_logging.ship import elastic_setup, kibana

from .fake_es import FakeElasticsearch, flatten_properties
from .fake_kibana import FakeKibana
from .saved_objects import fields_used, ndjson_objects, on_failures_view
from .shipper_proc import record, run_ship, write_lines

ROOT = Path(__file__).resolve().parent.parent


# --- templates and ILM ------------------------------------------------------------------------


def test_resources_are_generated_from_the_schema_and_do_not_drift():
    for name, body in elastic_setup.resources().items():
        committed = (ROOT / "amebo_logging" / "resources" / name).read_text()
        assert committed == elastic_setup.render(body), (
            f"{name} drifted: run python -m amebo_logging.ship.elastic_setup --write"
        )
    assert (ROOT / "kibana" / "amebo.ndjson").read_text() == kibana.ndjson(), "kibana/amebo.ndjson drifted"


def test_mappings_cover_every_schema_field_with_the_intended_types():
    mapped = flatten_properties(elastic_setup.component_mappings()["template"]["mappings"]["properties"])
    for f in schema.FIELDS:
        assert mapped[f.name] == f.type, f.name
    for name in ("correlation_id", "trace.id", "amebo.event_id", "log.level", "amebo.action", "amebo.application"):
        assert mapped[name] == "keyword"
    assert mapped["message"] == "match_only_text" and mapped["amebo.payload_size"] == "long"
    assert mapped["@timestamp"] == "date_nanos" and mapped["error.stack_trace"] == "wildcard"


def test_index_template_and_ilm_policy():
    t = elastic_setup.index_template()
    assert t["index_patterns"] == ["logs-amebo-*"] and t["data_stream"] == {} and t["priority"] > 100
    # composed as the stack's own logs template is (logs@custom included), each optional; ours last: they win
    assert t["composed_of"] == [
        "logs@mappings",
        "logs@settings",
        "logs@custom",
        "ecs@mappings",
        "amebo-logs@settings",
        "amebo-logs@mappings",
    ]
    assert t["ignore_missing_component_templates"] == ["logs@mappings", "logs@settings", "logs@custom", "ecs@mappings"]
    settings = elastic_setup.component_settings()["template"]
    assert settings["settings"]["index"]["lifecycle"]["name"] == "amebo-logs"
    assert settings["data_stream_options"] == {"failure_store": {"enabled": True}}
    assert elastic_setup.component_settings(False)["template"]["data_stream_options"]["failure_store"] == {
        "enabled": False
    }
    assert "data_stream_options" not in elastic_setup.component_settings(None)["template"]
    phases = elastic_setup.ilm_policy("45d")["policy"]["phases"]
    assert phases["hot"]["actions"]["rollover"] == {"max_primary_shard_size": "50gb", "max_age": "30d"}
    assert phases["delete"] == {"min_age": "45d", "actions": {"delete": {}}}


@pytest.mark.slow
def test_setup_installs_then_is_idempotent_and_the_template_applies(es, ship_dir):
    code, out, err = run_ship(["setup", "--es-url", es.url, "--ilm-delete-after", "60d"])
    assert code == 0, err
    assert out.splitlines()[:4] == [
        "created    ILM policy amebo-logs",
        "created    component template amebo-logs@settings",
        "created    component template amebo-logs@mappings",
        "created    index template amebo-logs",
    ]
    assert out.splitlines()[4].startswith("failure store: on for logs-amebo-*: documents Elasticsearch cannot index")
    assert es.store.ilm_policies["amebo-logs"]["policy"]["phases"]["delete"]["min_age"] == "60d"
    code, out, _ = run_ship(["setup", "--es-url", es.url, "--ilm-delete-after", "60d"])
    assert code == 0 and [line.split()[0] for line in out.splitlines()[:4]] == ["unchanged"] * 4
    code, out, _ = run_ship(["setup", "--es-url", es.url, "--ilm-delete-after", "30d"])
    assert out.splitlines()[0] == "updated    ILM policy amebo-logs"
    # the data stream now takes our mappings, and logs@settings' ignore_malformed: text in the
    # long amebo.payload_size is kept but not indexed (_ignored); an object there fails the
    # mapping and goes to the failure store; neither is lost, neither is "delivered" silently
    size = "amebo.payload_size"
    write_lines(
        ship_dir / "a.log", [record(1, **{size: 5}), record(2, **{size: "five"}), record(3, **{size: {"n": 1}})]
    )
    code, out, _ = run_ship(
        ["ship", str(ship_dir / "*.log"), "--once", "--es-url", es.url, "--state-dir", str(ship_dir.parent / "state")]
    )
    assert code == 0 and "delivered 2 documents " in out and "1 kept in the failure store" in out, out
    assert "0 dead-lettered" in out
    [ignored] = _search(es, "logs-amebo-default", {"exists": {"field": "_ignored"}})
    assert ignored["_source"]["seq"] == 2 and ignored["_ignored"] == ["amebo.payload_size"]
    [failed] = _search(es, "logs-amebo-default::failures")
    assert failed["_source"]["document"]["source"]["seq"] == 3
    assert failed["_source"]["error"]["type"] == "document_parsing_exception"


def _search(es, target, query=None):
    body = {"query": query} if query else {}
    return httpx.post(f"{es.url}/{target}/_search?size=100", json=body).json()["hits"]["hits"]


@pytest.mark.slow
def test_setup_refusals_are_one_line():
    with FakeElasticsearch(username="u", password="p") as es:
        code, _, err = run_ship(["setup", "--es-url", es.url, "--username", "u"], env={"AMEBO_LOGSHIP_PASSWORD": "x"})
        assert code == 4 and "refused the credentials" in err and "Traceback" not in err
        es.forbidden["/_index_template"] = 403
        code, out, err = run_ship(["setup", "--es-url", es.url, "--username", "u"], env={"AMEBO_LOGSHIP_PASSWORD": "p"})
        assert code == 4 and "manage_index_templates" in err and "unauthorized" in err
        assert len([x for x in err.splitlines() if x.startswith("amebo-logship: error:")]) == 1
    code, _, err = run_ship(["setup", "--es-url", es.url])
    assert code == 3 and "is unreachable" in err


@pytest.mark.slow
def test_setup_imports_the_kibana_objects_with_overwrite(es):
    kb = FakeKibana()
    try:
        code, out, err = run_ship(
            ["setup", "--es-url", es.url, "--kibana-url", kb.url, "--username", "elastic"],
            env={"AMEBO_LOGSHIP_PASSWORD": "pw"},
        )
        assert code == 0, err
        [imp] = kb.imports
        assert imp["path"] == "/api/saved_objects/_import?overwrite=true" and imp["xsrf"] == "true"
        assert imp["auth"].startswith("Basic ") and b'filename="amebo.ndjson"' in imp["disposition"]
        assert imp["objects"] == kibana.objects()
        assert f"imported   {len(kibana.objects())} Kibana saved objects" in out
        kb.status = 403
        code, _, err = run_ship(["setup", "--es-url", es.url, "--kibana-url", kb.url])
        assert code == 4 and "Kibana refused the credentials" in err
    finally:
        kb.close()


# --- the Kibana saved objects -------------------------------------------------------------------


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def test_kibana_objects_are_valid_unique_and_resolve():
    objs = ndjson_objects()
    ids = [(o["type"], o["id"]) for o in objs]
    assert len(ids) == len(set(ids))
    types = {o["type"] for o in objs}
    assert types == {"index-pattern", "search", "lens", "dashboard"}
    assert sum(o["type"] == "search" for o in objs) == 6 and sum(o["type"] == "lens" for o in objs) == 6
    assert sum(o["type"] == "index-pattern" for o in objs) == 2
    present = set(ids)
    for o in objs:
        assert version_tuple(o["coreMigrationVersion"]) <= (8, 8, 0)
        assert version_tuple(o["typeMigrationVersion"]) <= (8, 9, 0)
        names = [r["name"] for r in o["references"]]
        assert len(names) == len(set(names))
        for ref in o["references"]:
            assert (ref["type"], ref["id"]) in present, ref
        attrs = o["attributes"]
        if o["type"] == "dashboard":
            for panel in json.loads(attrs["panelsJSON"]):
                assert panel["panelRefName"] in names
        if o["type"] == "search":
            source = json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
            assert source["indexRefName"] in names
        if o["type"] == "lens":
            layers = attrs["state"]["datasourceStates"]["formBased"]["layers"]
            for layer_id, layer in layers.items():
                assert f"indexpattern-datasource-layer-{layer_id}" in names
                assert sorted(layer["columnOrder"]) == sorted(layer["columns"])
                bucketed = [layer["columns"][c]["isBucketed"] for c in layer["columnOrder"]]
                assert bucketed == sorted(bucketed, reverse=True), "bucket columns come first"
                for column in layer["columns"].values():  # terms are ordered by a column that exists
                    order = column.get("params", {}).get("orderBy", {})
                    if order.get("type") == "column":
                        assert order["columnId"] in layer["columns"], (o["id"], order)
                vis = attrs["state"]["visualization"]
                accessors = [c["columnId"] for c in vis.get("columns", [])]
                for vis_layer in vis.get("layers", []):
                    accessors += [vis_layer["xAccessor"], *vis_layer["accessors"]] + (
                        [vis_layer["splitAccessor"]] if "splitAccessor" in vis_layer else []
                    )
                assert set(accessors) <= set(layer["columns"]), o["id"]


def test_every_field_the_objects_use_is_in_the_template():
    mapped = flatten_properties(elastic_setup.component_mappings()["template"]["mappings"]["properties"])
    objs = ndjson_objects()
    used = fields_used([o for o in objs if not on_failures_view(o)])
    assert {"correlation_id", "amebo.action", "event.duration", "error.type", "log.level", "_ignored"} <= used
    metadata = {"_ignored"}  # Elasticsearch's own: an exists query on it finds ignore_malformed documents
    assert used - metadata <= set(mapped), used - metadata - set(mapped)
    # the failure store's view uses the fields Elasticsearch gives failure documents
    assert fields_used([o for o in objs if on_failures_view(o)]) <= set(kibana.FAILURE_FIELDS)


def test_the_failure_store_and_ignored_fields_have_a_view():
    objs = {o["id"]: o for o in ndjson_objects()}
    view = objs[kibana.FAILURES_VIEW_ID]["attributes"]
    assert view["title"] == "logs-amebo-*::failures" and view["timeFieldName"] == "@timestamp"
    failures = objs["amebo-failure-store"]
    assert failures["references"][0]["id"] == kibana.FAILURES_VIEW_ID
    assert failures["attributes"]["columns"][:2] == ["error.type", "error.message"]
    ignored = json.loads(objs["amebo-ignored-fields"]["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert ignored["query"] == {"query": "_ignored : *", "language": "kuery"}


def test_no_two_dashboard_panels_overlap():
    [dash] = [o for o in ndjson_objects() if o["type"] == "dashboard"]
    grid = [p["gridData"] for p in json.loads(dash["attributes"]["panelsJSON"])]
    cells = {}
    for g in grid:
        assert g["x"] >= 0 and g["x"] + g["w"] <= kibana.GRID_COLUMNS
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{g['i']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = g["i"]
    # reading order, and no hole: each row is full before the next starts, except the last
    assert [(g["y"], g["x"]) for g in grid] == sorted((g["y"], g["x"]) for g in grid)
    assert kibana.layout([24, 48, 24, 24, 48]) == [(0, 0), (0, 15), (0, 30), (24, 30), (0, 45)]


def _kibana_href(url: str, origin: str, base_path: str, pathname: str) -> str:
    """Where Kibana's URL field formatter (field_formats/common/converters/url.ts, htmlConvert)
    points a link it renders in Discover: an http(s) URL as it is; '#...' under the current
    page; a path starting with the base path under the origin; anything else under
    origin + base path + '/app'."""
    if url.startswith(("http://", "https://", "mailto:")):
        return url
    if url.startswith("#"):
        return origin + pathname + url
    if url.startswith(base_path or "/"):
        return origin + url
    return origin + base_path + "/app" + ("" if url.startswith("/") else "/") + url


def test_correlation_id_links_to_discover_filtered_on_it_behind_any_base_path():
    view = next(o for o in ndjson_objects() if o["id"] == kibana.DATA_VIEW_ID)
    assert view["attributes"]["title"] == "logs-amebo-*" and view["attributes"]["timeFieldName"] == "@timestamp"
    fmt = json.loads(view["attributes"]["fieldFormatMap"])["correlation_id"]
    assert fmt["id"] == "url"
    template = fmt["params"]["urlTemplate"]
    assert 'correlation_id:"{{value}}"' in template
    for base in ("", "/kibana", "/ops/kibana"):
        href = _kibana_href(template, "https://kb.example.com", base, base + "/app/discover")
        assert href.startswith(f"https://kb.example.com{base}/app/discover#/?"), (base, href)


# --- Logstash -------------------------------------------------------------------------------------

BUNDLED = {
    "input": {
        "beats",
        "tcp",
        "http",
        "elastic_agent",
        "file",
        "stdin",
        "generator",
        "heartbeat",
        "udp",
        "syslog",
        "kafka",
        "redis",
        "pipeline",
        "dead_letter_queue",
        "elasticsearch",
        "s3",
        "sqs",
        "http_poller",
    },
    "filter": {
        "json",
        "mutate",
        "fingerprint",
        "date",
        "grok",
        "dissect",
        "drop",
        "kv",
        "ruby",
        "translate",
        "useragent",
        "geoip",
        "split",
        "clone",
        "prune",
        "uuid",
        "elasticsearch",
        "truncate",
        "urldecode",
    },
    "output": {"elasticsearch", "stdout", "file", "pipeline", "tcp", "udp", "http", "kafka", "redis", "s3"},
    "codec": {"json", "json_lines", "plain", "line", "rubydebug", "multiline", "es_bulk"},
}


def parse_logstash(text: str) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """{section: [(plugin, {option: raw value})]} for a pipeline file; conditionals flattened."""
    out: dict[str, list[tuple[str, dict[str, str]]]] = {"input": [], "filter": [], "output": []}
    stack: list[str] = []
    for raw in text.splitlines():
        line = re.sub(r'"[^"]*"', '""', raw.split("#", 1)[0]).strip()
        if not line:
            continue
        block = re.fullmatch(r"([a-z_][a-z0-9_]*)\s*\{", line)
        if re.match(r"(if|else)\b", line) and line.endswith("{"):
            stack.append("?")
        elif block:
            name = block.group(1)
            if stack and stack[0] in out and all(s == "?" for s in stack[1:]):
                out[stack[0]].append((name, {}))
            stack.append(name)
        elif line == "}":
            stack.pop()
        elif "=>" in line and stack and stack[0] in out and out[stack[0]]:
            key, _, _ = line.partition("=>")
            value = raw.split("=>", 1)[1].strip()
            out[stack[0]][-1][1][key.strip()] = value
    assert not stack, "unbalanced braces"
    return out


def test_pipelines_point_at_existing_files_and_use_bundled_plugins():
    pipelines = yaml.safe_load((ROOT / "logstash" / "config" / "pipelines.yml").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.elk.yml").read_text())
    mounts = dict(v.split(":")[1::-1] for v in compose["services"]["logstash"]["volumes"])  # container -> host
    for p in pipelines:
        container_path = p["path.config"]
        host_dir = mounts["/usr/share/logstash/pipeline"]
        host_file = ROOT / host_dir / Path(container_path).relative_to("/usr/share/logstash/pipeline")
        assert host_file.is_file(), host_file
        parsed = parse_logstash(host_file.read_text())
        for section, plugins in parsed.items():
            for name, options in plugins:
                assert name in BUNDLED[section], f"{section} plugin {name} is not bundled with Logstash"
                codec = options.get("codec")
                if codec:
                    assert codec in BUNDLED["codec"]


def test_pipeline_rules_for_logstash_8_19_and_9():
    conf = parse_logstash((ROOT / "logstash" / "pipeline" / "amebo.conf").read_text())
    inputs = dict(conf["input"])
    assert inputs["beats"]["port"] == "5044" and inputs["tcp"]["port"] == "5000" and inputs["http"]["port"] == "8080"
    assert inputs["tcp"]["codec"] == "json_lines"
    removed_in_9 = {"ssl", "cacert", "ssl_certificate_verification", "ssl_verify_mode"}
    for section in conf.values():
        for name, opts in section:
            assert not removed_in_9 & opts.keys(), (name, removed_in_9 & opts.keys())
    [(name, es_out)] = conf["output"]
    assert name == "elasticsearch" and es_out["data_stream"] == '"true"'
    rejected_with_data_stream = {
        "index",
        "manage_template",
        "template",
        "template_name",
        "template_overwrite",
        "ilm_enabled",
        "ilm_rollover_alias",
        "ilm_pattern",
        "ilm_policy",
        "document_type",
    }
    assert not rejected_with_data_stream & es_out.keys()
    assert es_out["data_stream_dataset"] == '"amebo"' and es_out["data_stream_namespace"] == '"default"'
    for secret in ("user", "password", "hosts"):
        assert "${" in es_out[secret]
    assert "fingerprint" in es_out["document_id"]
    # replays are 409s by design (fingerprint ids): not a WARN each
    assert "version_conflict_engine_exception" in es_out["silence_errors_in_log"]
    text = (ROOT / "logstash" / "pipeline" / "amebo.conf").read_text()
    assert re.search(r"remove_tag => \[[^\]]*\"beats_input_codec_plain_applied\"", text)
    # the http poster's address is the request's source, not the log's host
    assert '"[host][ip]" => "[source][ip]"' in text
    assert "::failures" in text and "9.2" in text  # where refused events go, per version
    filters = [name for name, _ in conf["filter"]]
    assert "json" in filters and "fingerprint" in filters
    json_filter = dict(conf["filter"])["json"]
    assert "_jsonparsefailure" in json_filter["tag_on_failure"]
    settings = yaml.safe_load((ROOT / "logstash" / "config" / "logstash.yml").read_text())
    assert settings["dead_letter_queue.enable"] is True
    assert "http.host" not in settings and settings["api.http.host"]


# --- docker-compose.elk.yml ----------------------------------------------------------------------


def test_compose_file_is_consistent():
    text = (ROOT / "docker-compose.elk.yml").read_text()
    compose = yaml.safe_load(text)
    services = compose["services"]
    env_example = (ROOT / ".env.example").read_text()
    declared = dict(line.split("=", 1) for line in env_example.splitlines() if line and not line.startswith("#"))
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_]+)", text))
    assert used <= declared.keys(), used - declared.keys()
    for secret in ("ELASTIC_PASSWORD", "KIBANA_PASSWORD", "KIBANA_ENCRYPTION_KEY"):
        assert declared[secret] == ""  # no default password is committed
        assert re.search(r"\$\{" + secret + r":\?", text)  # and compose refuses to start without one
    assert not re.search(r"(?i)password[=:]\s*['\"]?(changeme|elastic|secret|password)\b", text)
    for name, service in services.items():
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("."):
                assert (ROOT / host).exists(), f"{name} mounts missing {host}"
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").is_file()
    versions = {services[s]["image"].split(":", 1)[1] for s in ("elasticsearch", "kibana", "logstash")}
    assert versions == {"${STACK_VERSION:?set STACK_VERSION in .env}"}
    for s in ("elasticsearch", "kibana", "logstash"):
        assert "healthcheck" in services[s]
    assert services["amebo-setup"]["depends_on"] == {
        "elasticsearch": {"condition": "service_healthy"},
        "kibana": {"condition": "service_healthy"},
    }
    assert services["amebo-setup"]["command"][:2] == ["amebo-logship", "setup"]
    assert "--kibana-url" in services["amebo-setup"]["command"]
    ship = services["amebo-logship"]
    assert ship["command"][:2] == ["amebo-logship", "ship"] and "amebo-demo" not in services
    # it reads Docker's json-file logs of the Amebo containers, read-only, as root
    assert ship["command"][ship["command"].index("--format") + 1] == "docker"
    assert "/var/lib/docker/containers:/var/lib/docker/containers:ro" in ship["volumes"] and ship["user"] == "root"
    assert ship["command"][2].startswith("/var/lib/docker/containers/")
    # the real Amebo, through the integration, and its load and subscriber, logging to Docker
    assert services["amebo"]["command"][:3] == ["python", "-m", "amebo_logging.amebo"]
    assert services["amebo-load"]["command"][-1] == "/app/deploy/compose/loadgen.py"
    assert "subscriber:app" in services["amebo-subscriber"]["command"]
    for name in ("amebo", "amebo-subscriber", "amebo-load"):
        assert services[name]["logging"]["driver"] == "json-file"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "amebo==0.9.6" in dockerfile and "COPY deploy/compose" in dockerfile
    elastic_env = dict(e.split("=", 1) for e in services["elasticsearch"]["environment"])
    assert elastic_env["xpack.security.enabled"] == "true" and elastic_env["discovery.type"] == "single-node"
    logstash_ports = {p.rsplit(":", 1)[1] for p in services["logstash"]["ports"]}
    conf = parse_logstash((ROOT / "logstash" / "pipeline" / "amebo.conf").read_text())
    assert logstash_ports == {opts["port"] for _, opts in conf["input"]}
    for service in services.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), "published on loopback only"
