#!/usr/bin/env python3
"""Checks what matters in template.yaml that cfn-lint and `sam validate --lint` do not.

The linters check types and required properties but not, for example, enum values inside SAM
event sources (`FunctionResponseTypes: [Nope]` passes) or relations between resources (a
queue's visibility timeout against its consumer's timeout). This script parses the template
with cfn-lint's own YAML loader (so !Ref, !GetAtt, !Sub are read as CloudFormation reads them)
and asserts the pipeline's invariants.

    .venv/bin/python scripts/check_template.py [template.yaml]

Prints one "ok" line per check; on failure, one "FAIL" line per problem, exit status 1.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parent.parent
BINARIES = ("ingest", "enrich", "route", "notify", "claim", "console", "sla", "report-hours")
CONSUMERS = ("enrich", "route", "notify")
ENV_CONTRACT = (
    "LEADRELAY_TABLE",
    "LEADRELAY_ENRICH_QUEUE_URL",
    "LEADRELAY_ROUTE_QUEUE_URL",
    "LEADRELAY_NOTIFY_QUEUE_URL",
    "LEADRELAY_NOTIFY_DLQ_URL",
    "LEADRELAY_CONFIG_PARAMETER",
    "LEADRELAY_SECRETS_PATH",
    "LEADRELAY_LOG_FORMAT",
    "RUST_LOG",
)
HTTP_ROUTES = (("POST", "/webhooks/{source}"), ("HEAD", "/webhooks/{source}"), ("GET", "/leads/{id}"),
               ("GET", "/healthz"))
MIN_RECEIVES = 5
# The configuration the template is checked against ([pipeline] retry_schedule).
EXAMPLE_CONFIG = ROOT / "config" / "leadrelay.toml"
# SQS's longest visibility timeout, which one retry step becomes (ChangeMessageVisibility).
MAX_VISIBILITY = 12 * 3600
VISIBILITY_FACTOR = 6
DLQ_RETENTION = 14 * 24 * 3600
# The only values AWS accepts (Lambda EventSourceMapping FunctionResponseTypes).
RESPONSE_TYPES = {"ReportBatchItemFailures"}


class Problem(Exception):
    pass


class Template:
    def __init__(self, path: Path):
        self.path = path
        self.doc = cfn_yaml.load(str(path))
        self.resources = self.doc.get("Resources") or {}
        self.parameters = self.doc.get("Parameters") or {}
        self.globals = (self.doc.get("Globals") or {}).get("Function") or {}

    def where(self, node) -> str:
        mark = getattr(node, "start_mark", None)
        return f"{self.path.name}:{mark.line + 1}" if mark else self.path.name

    def of_type(self, kind: str) -> dict:
        return {k: v for k, v in self.resources.items() if v.get("Type") == kind}

    def function_prop(self, name: str, prop: str):
        """A function property with SAM Globals applied (a function's own value wins)."""
        props = self.resources[name].get("Properties") or {}
        return props[prop] if prop in props else self.globals.get(prop)

    def number(self, value, what: str, worst: str = "low") -> float:
        """A literal, or a parameter's worst case over what a deployer can pass: worst="low"
        is the smaller of its Default and MinValue, worst="high" the larger of Default and
        MaxValue."""
        if isinstance(value, bool):
            raise Problem(f"{what}: {value!r} is not a number")
        if isinstance(value, (int, float)):
            return value
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise Problem(f"{what}: {value!r} is not a number") from None
        if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in self.parameters:
            param = self.parameters[value["Ref"]]
            bound = "MinValue" if worst == "low" else "MaxValue"
            if "Default" not in param or bound not in param:
                raise Problem(
                    f"{what}: parameter {value['Ref']} needs a Default and a {bound} to be checked"
                )
            pick = min if worst == "low" else max
            return pick(float(param["Default"]), float(param[bound]))
        raise Problem(f"{what}: cannot resolve {value!r} to a number")

    @staticmethod
    def ref_target(value) -> str | None:
        """The logical id behind !Ref X or !GetAtt X.Attr."""
        if isinstance(value, dict):
            if "Ref" in value:
                return value["Ref"]
            if "Fn::GetAtt" in value:
                att = value["Fn::GetAtt"]
                return att[0] if isinstance(att, list) else str(att).split(".")[0]
        return None

    @staticmethod
    def binary(res) -> str | None:
        """The function's Metadata.BuildProperties.Binary."""
        return ((res.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")

    def functions_by_binary(self) -> dict[str, str]:
        out = {}
        for name, res in self.of_type("AWS::Serverless::Function").items():
            binary = self.binary(res)
            if binary:
                out.setdefault(binary, name)
        return out

    def sqs_events(self):
        """(function, event name, event properties, queue logical id) for each SQS event."""
        for fname, res in self.of_type("AWS::Serverless::Function").items():
            for ename, event in ((res.get("Properties") or {}).get("Events") or {}).items():
                if event.get("Type") == "SQS":
                    props = event.get("Properties") or {}
                    yield fname, ename, props, self.ref_target(props.get("Queue"))


# --- checks ---------------------------------------------------------------------------------
# Each returns a one-line summary for "ok" or raises Problem; a check may collect several
# problems and raise them joined.


def check_functions(t: Template) -> str:
    problems = []
    fns = t.of_type("AWS::Serverless::Function")
    by_binary = t.functions_by_binary()
    for binary in BINARIES:
        if binary not in by_binary:
            problems.append(f"no function with Metadata.BuildProperties.Binary: {binary}")
    for name, res in fns.items():
        meta = res.get("Metadata") or {}
        if meta.get("BuildMethod") != "rust-cargolambda":
            problems.append(f"{name} ({t.where(res)}): Metadata.BuildMethod is "
                            f"{meta.get('BuildMethod')!r}, want 'rust-cargolambda'")
        arch = t.function_prop(name, "Architectures")
        if arch != ["arm64"]:
            problems.append(f"{name}: Architectures is {arch!r}, want ['arm64']")
        if t.function_prop(name, "Runtime") != "provided.al2023":
            problems.append(f"{name}: Runtime is {t.function_prop(name, 'Runtime')!r}, "
                            "want 'provided.al2023'")
        if t.function_prop(name, "Handler") != "bootstrap":
            problems.append(f"{name}: Handler must be 'bootstrap'")
        binary = t.binary(res)
        code_uri = t.function_prop(name, "CodeUri")
        if code_uri != f"functions/{binary}" or not (ROOT / str(code_uri) / "Cargo.toml").is_file():
            problems.append(f"{name}: CodeUri is {code_uri!r}, want 'functions/{binary}' (the "
                            "function's own directory, where cargo applies the Lambda release "
                            "settings of functions/.cargo/config.toml)")
    if problems:
        raise Problem("; ".join(problems))
    return (f"{len(fns)} functions ({', '.join(sorted(by_binary))}): rust-cargolambda, arm64, "
            "provided.al2023, each built from functions/<binary>")


def release_setting(binary: str, key: str):
    """A function's [profile.release] `key` as cargo resolves it when it builds from the
    function's directory: the function's own .cargo/config.toml over functions/.cargo/config.toml
    over the workspace's Cargo.toml."""
    layers = (ROOT / "Cargo.toml", ROOT / "functions" / ".cargo" / "config.toml",
              ROOT / "functions" / binary / ".cargo" / "config.toml")
    value = None
    for path in layers:
        if path.is_file():
            release = tomllib.loads(path.read_text()).get("profile", {}).get("release", {})
            value = release.get(key, value)
    return value


def check_panic_strategy(t: Template) -> str:
    """Only a function that serves nothing but HTTP requests may abort on a panic: the batch
    functions (SQS, streams) report a panicking message alone by catching its unwind, and the
    scheduled sweep keeps going past one bad lead the same way."""
    problems, aborting = [], []
    for binary, name in sorted(t.functions_by_binary().items()):
        events = ((t.resources[name].get("Properties") or {}).get("Events") or {}).values()
        kinds = {e.get("Type") for e in events}
        panic = release_setting(binary, "panic")
        if panic == "abort":
            aborting.append(binary)
            if kinds != {"HttpApi"}:
                problems.append(f"{binary}: panic = \"abort\" but its events are "
                                f"{sorted(k or '?' for k in kinds)}: only an HTTP-only function may "
                                "abort")
        elif panic != "unwind":
            problems.append(f"{binary}: [profile.release] panic is {panic!r}; say \"unwind\" "
                            "(cargo-lambda's default is abort)")
    if problems:
        raise Problem("; ".join(problems))
    return (f"abort in {', '.join(aborting) or 'none'} (HTTP only), unwind in the batch and "
            "scheduled functions")


def check_environment(t: Template) -> str:
    problems = []
    for name in t.of_type("AWS::Serverless::Function"):
        # SAM merges a function's variables into the Globals' variables.
        env = ((t.globals.get("Environment") or {}).get("Variables") or {})
        own = ((t.resources[name].get("Properties") or {}).get("Environment") or {})
        env = {**env, **(own.get("Variables") or {})}
        missing = [v for v in ENV_CONTRACT if v not in env]
        if missing:
            problems.append(f"{name} lacks {', '.join(missing)}")
        elif env.get("LEADRELAY_LOG_FORMAT") != "json":
            problems.append(f"{name}: LEADRELAY_LOG_FORMAT must be json")
    if problems:
        raise Problem("; ".join(problems))
    return f"every function has the {len(ENV_CONTRACT)} contract environment variables"


def check_http_routes(t: Template) -> str:
    ingest = t.functions_by_binary().get("ingest")
    if not ingest:
        raise Problem("no ingest function")
    found = {}
    for event in ((t.resources[ingest].get("Properties") or {}).get("Events") or {}).values():
        if event.get("Type") == "HttpApi":
            p = event.get("Properties") or {}
            found[(str(p.get("Method", "")).upper(), p.get("Path"))] = p
    problems = []
    for route in HTTP_ROUTES:
        p = found.get(route)
        if p is None:
            problems.append(f"{ingest} has no HttpApi event {route[0]} {route[1]}")
        elif str(p.get("PayloadFormatVersion")) != "2.0":
            problems.append(f"{route[0]} {route[1]}: PayloadFormatVersion must be \"2.0\"")
        elif t.ref_target(p.get("ApiId")) not in t.of_type("AWS::Serverless::HttpApi"):
            problems.append(f"{route[0]} {route[1]}: ApiId must !Ref the template's HttpApi")
    if problems:
        raise Problem("; ".join(problems))
    return "HTTP API routes " + ", ".join(f"{m} {p}" for m, p in HTTP_ROUTES) + f" -> {ingest}"


def check_event_sources(t: Template) -> str:
    problems, count = [], 0
    consumers = {t.functions_by_binary().get(b): b for b in CONSUMERS}
    seen = set()
    for fname, ename, props, queue in t.sqs_events():
        count += 1
        seen.add(fname)
        at = f"{fname}.Events.{ename} ({t.where(props)})"
        types = props.get("FunctionResponseTypes")
        if not isinstance(types, list) or "ReportBatchItemFailures" not in types:
            problems.append(f"{at}: FunctionResponseTypes must be [ReportBatchItemFailures]")
        elif set(types) - RESPONSE_TYPES:
            problems.append(f"{at}: unknown FunctionResponseTypes {sorted(set(types) - RESPONSE_TYPES)}")
        if queue not in t.of_type("AWS::SQS::Queue"):
            problems.append(f"{at}: Queue must !GetAtt a queue of this template")
        if props.get("BatchSize") != 10:
            problems.append(f"{at}: BatchSize is {props.get('BatchSize')!r}, want 10")
        if props.get("MaximumBatchingWindowInSeconds") != 0:
            problems.append(f"{at}: MaximumBatchingWindowInSeconds must be 0 (latency first)")
    for fname, binary in consumers.items():
        if fname and fname not in seen:
            problems.append(f"{fname} ({binary}) has no SQS event source")
    if problems:
        raise Problem("; ".join(problems))
    return f"{count} SQS event sources report batch item failures, BatchSize 10, no batching window"


def check_notify_concurrency(t: Template) -> str:
    notify = t.functions_by_binary().get("notify")
    events = [p for f, _, p, _ in t.sqs_events() if f == notify]
    if not events:
        raise Problem("the notify function has no SQS event source")
    for props in events:
        scaling = props.get("ScalingConfig") or {}
        if "MaximumConcurrency" not in scaling:
            raise Problem(f"{notify} SQS event ({t.where(props)}): ScalingConfig.MaximumConcurrency "
                          "is missing")
        value = t.number(scaling["MaximumConcurrency"], "ScalingConfig.MaximumConcurrency")
        if value < 2:
            raise Problem(f"ScalingConfig.MaximumConcurrency can be {value:g}; AWS's minimum is 2")
    return f"{notify} event source has ScalingConfig.MaximumConcurrency (>= 2)"


def check_redrive(t: Template) -> str:
    problems = []
    queues = t.of_type("AWS::SQS::Queue")
    work = sorted({q for *_, q in t.sqs_events() if q})
    dlqs = set()
    for q in work:
        props = queues.get(q, {}).get("Properties") or {}
        redrive = props.get("RedrivePolicy")
        if not redrive:
            problems.append(f"{q}: no RedrivePolicy")
            continue
        dlq = t.ref_target(redrive.get("deadLetterTargetArn"))
        if dlq not in queues or dlq in work:
            problems.append(f"{q}: deadLetterTargetArn must !GetAtt a dead-letter queue of this "
                            "template")
        else:
            dlqs.add(dlq)
        try:
            n = t.number(redrive.get("maxReceiveCount"), f"{q} maxReceiveCount")
            if n < MIN_RECEIVES:
                problems.append(f"{q}: maxReceiveCount can be {n:g}, want >= {MIN_RECEIVES}")
        except Problem as e:
            problems.append(str(e))
        if props.get("SqsManagedSseEnabled") is not True and "KmsMasterKeyId" not in props:
            problems.append(f"{q}: no server-side encryption")
    for dlq in sorted(dlqs):
        props = queues[dlq].get("Properties") or {}
        if props.get("MessageRetentionPeriod") != DLQ_RETENTION:
            problems.append(f"{dlq}: MessageRetentionPeriod must be {DLQ_RETENTION} (14 days)")
        if props.get("SqsManagedSseEnabled") is not True and "KmsMasterKeyId" not in props:
            problems.append(f"{dlq}: no server-side encryption")
    if len(dlqs) != len(work):
        problems.append(f"{len(work)} work queues but {len(dlqs)} distinct dead-letter queues")
    if problems:
        raise Problem("; ".join(problems))
    return (f"{len(work)} work queues redrive to their own DLQ (maxReceiveCount >= {MIN_RECEIVES}, "
            "DLQ retention 14 days, SSE)")


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text: str) -> float:
    """A compact friendly duration as the configuration writes it: "500ms", "2m", "1h 30m"."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", text)
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)|\s", "", text):
        raise Problem(f"{text!r} is not a duration this check reads (use e.g. 5s, 2m, 1h 30m)")
    return sum(float(n) * _UNITS[unit] for n, unit in parts)


def check_retry_schedule(t: Template) -> str:
    """The stage retries on [pipeline] retry_schedule and dead-letters a message itself (with an
    error log) once it is spent: SQS's redrive must not come first, each step must fit SQS's
    visibility limit, and the work queues must keep a message for the whole schedule."""
    with EXAMPLE_CONFIG.open("rb") as f:
        pipeline = tomllib.load(f).get("pipeline") or {}
    steps = [seconds(step) for step in pipeline.get("retry_schedule") or []]
    if not steps:
        raise Problem(f"{EXAMPLE_CONFIG.name}: no [pipeline] retry_schedule")
    attempts, span = len(steps) + 1, sum(steps)
    problems = []
    if max(steps) > MAX_VISIBILITY:
        problems.append(f"a retry step of {max(steps):g} s is longer than SQS's 12 h visibility")
    queues = t.of_type("AWS::SQS::Queue")
    work = sorted({q for *_, q in t.sqs_events() if q})
    for q in work:
        props = queues.get(q, {}).get("Properties") or {}
        try:
            n = t.number((props.get("RedrivePolicy") or {}).get("maxReceiveCount"),
                         f"{q} maxReceiveCount")
            if n < attempts:
                problems.append(f"{q}: maxReceiveCount can be {n:g}, below the {attempts} "
                                "attempts of the retry schedule (SQS would dead-letter first, "
                                "without the stage's error log)")
            retention = t.number(props.get("MessageRetentionPeriod", 345600),
                                 f"{q} MessageRetentionPeriod")
            if retention <= span:
                problems.append(f"{q}: MessageRetentionPeriod {retention:g} s does not outlast "
                                f"the retry schedule ({span:g} s)")
        except Problem as e:
            problems.append(str(e))
    if problems:
        raise Problem("; ".join(problems))
    return (f"the retry schedule ({len(steps)} steps, {span / 3600:.1f} h) ends before SQS's "
            f"redrive (maxReceiveCount >= {attempts}) and within the queues' retention")


def check_visibility(t: Template) -> str:
    problems, lines = [], []
    queues = t.of_type("AWS::SQS::Queue")
    for fname, _, _, q in t.sqs_events():
        if q not in queues:
            continue
        try:
            # Lambda's default timeout is 3 s; a parameter counts at its largest.
            timeout = t.number(t.function_prop(fname, "Timeout") or 3, f"{fname} Timeout",
                               worst="high")
            vis = t.number((queues[q].get("Properties") or {}).get("VisibilityTimeout", 30),
                           f"{q} VisibilityTimeout")
        except Problem as e:
            problems.append(str(e))
            continue
        if vis < VISIBILITY_FACTOR * timeout:
            problems.append(f"{q}: VisibilityTimeout {vis:g} s < {VISIBILITY_FACTOR} x {fname} "
                            f"Timeout {timeout:g} s")
        lines.append(f"{q} {vis:g} s >= 6 x {timeout:g} s")
    if problems:
        raise Problem("; ".join(problems))
    return "visibility timeouts: " + ", ".join(lines)


def check_table(t: Template) -> str:
    tables = t.of_type("AWS::DynamoDB::Table")
    if len(tables) != 1:
        raise Problem(f"want exactly one AWS::DynamoDB::Table, found {len(tables)}")
    name, res = next(iter(tables.items()))
    p = res.get("Properties") or {}
    problems = []
    attrs = {a["AttributeName"]: a["AttributeType"] for a in p.get("AttributeDefinitions", [])}
    keys = lambda schema: [(k["AttributeName"], k["KeyType"]) for k in schema]  # noqa: E731
    if p.get("BillingMode") != "PAY_PER_REQUEST":
        problems.append("BillingMode must be PAY_PER_REQUEST")
    if (p.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled") is not True:
        problems.append("point-in-time recovery is not enabled")
    if (p.get("SSESpecification") or {}).get("SSEEnabled") is not True:
        problems.append("SSESpecification.SSEEnabled must be true")
    ttl = p.get("TimeToLiveSpecification") or {}
    if ttl.get("AttributeName") != "expires_at" or ttl.get("Enabled") is not True:
        problems.append("TimeToLiveSpecification must enable TTL on expires_at")
    if keys(p.get("KeySchema", [])) != [("pk", "HASH"), ("sk", "RANGE")]:
        problems.append("KeySchema must be pk HASH, sk RANGE")
    if attrs.get("pk") != "S" or attrs.get("sk") != "S":
        problems.append("pk and sk must be S")
    gsis = {g.get("IndexName"): g for g in p.get("GlobalSecondaryIndexes", [])}
    gsi = gsis.get("open_sla")
    if gsi is None:
        problems.append("no GSI open_sla")
    else:
        if keys(gsi.get("KeySchema", [])) != [("sla_shard", "HASH"), ("sla_due_at", "RANGE")]:
            problems.append("open_sla KeySchema must be sla_shard HASH, sla_due_at RANGE")
        if attrs.get("sla_shard") != "S" or attrs.get("sla_due_at") != "N":
            problems.append("sla_shard must be S and sla_due_at N")
        if (gsi.get("Projection") or {}).get("ProjectionType") != "KEYS_ONLY":
            problems.append("open_sla projection must be KEYS_ONLY")
    if res.get("DeletionPolicy") != "Retain":
        problems.append("the table needs DeletionPolicy: Retain")
    if problems:
        raise Problem(f"{name} ({t.where(res)}): " + "; ".join(problems))
    return f"{name}: on-demand, PITR, SSE, TTL on expires_at, GSI open_sla (sla_shard S, sla_due_at N, KEYS_ONLY)"


def _alarms(t: Template):
    for name, res in t.of_type("AWS::CloudWatch::Alarm").items():
        p = res.get("Properties") or {}
        dims = {d.get("Name"): t.ref_target(d.get("Value")) for d in p.get("Dimensions", [])}
        yield name, p, dims


def _fires_on_first(t: Template, p) -> bool:
    try:
        threshold = t.number(p.get("Threshold"), "Threshold")
    except Problem:
        return False
    op = p.get("ComparisonOperator")
    return (op == "GreaterThanThreshold" and threshold == 0) or (
        op == "GreaterThanOrEqualToThreshold" and threshold <= 1)


def _has_actions_when_topic_set(p) -> bool:
    actions = p.get("AlarmActions")
    return isinstance(actions, dict) and "Fn::If" in actions


def check_dlq_alarms(t: Template) -> str:
    queues = t.of_type("AWS::SQS::Queue")
    dlqs = sorted({t.ref_target((queues[q].get("Properties") or {}).get("RedrivePolicy", {})
                                .get("deadLetterTargetArn")) for *_, q in t.sqs_events()
                   if q in queues} - {None})
    problems = []
    for dlq in dlqs:
        hits = [n for n, p, dims in _alarms(t)
                if p.get("Namespace") == "AWS/SQS"
                and p.get("MetricName") == "ApproximateNumberOfMessagesVisible"
                and dims.get("QueueName") == dlq]
        if not hits:
            problems.append(f"{dlq} has no ApproximateNumberOfMessagesVisible alarm")
            continue
        p = t.resources[hits[0]]["Properties"]
        if not _fires_on_first(t, p):
            problems.append(f"{hits[0]} must fire on the first message (> 0)")
        if not _has_actions_when_topic_set(p):
            problems.append(f"{hits[0]}: AlarmActions must be !If [HasAlarmTopic, ...]")
    if problems:
        raise Problem("; ".join(problems))
    return f"every DLQ has an alarm on its first visible message ({', '.join(dlqs)})"


def check_error_alarms(t: Template) -> str:
    problems = []
    fns = sorted(t.of_type("AWS::Serverless::Function"))
    for fname in fns:
        hits = [n for n, p, dims in _alarms(t)
                if p.get("Namespace") == "AWS/Lambda" and p.get("MetricName") == "Errors"
                and dims.get("FunctionName") == fname]
        if not hits:
            problems.append(f"{fname} has no Errors alarm")
        elif not _fires_on_first(t, t.resources[hits[0]]["Properties"]):
            problems.append(f"{hits[0]} must fire on the first error (> 0)")
    if problems:
        raise Problem("; ".join(problems))
    return f"every function has an Errors > 0 alarm ({len(fns)})"


def check_outputs(t: Template) -> str:
    outputs = t.doc.get("Outputs") or {}
    want = ["WebhookUrl", "EnrichQueueUrl", "RouteQueueUrl", "NotifyQueueUrl",
            "EnrichDLQUrl", "RouteDLQUrl", "NotifyDLQUrl", "LeadTableName"]
    missing = [o for o in want if o not in outputs]
    if missing:
        raise Problem("missing outputs: " + ", ".join(missing))
    url = str((outputs["WebhookUrl"].get("Value") or {}).get("Fn::Sub", ""))
    if not url.endswith("/webhooks/{source}"):
        raise Problem("WebhookUrl must end with /webhooks/{source}")
    return "outputs: " + ", ".join(want)


CLAIM_ROUTES = (("GET", "/claim/{lead_id}"), ("POST", "/claim/{lead_id}"),
                ("POST", "/slack/interactivity"))


def check_claim_routes(t: Template) -> str:
    claim = t.functions_by_binary().get("claim")
    props = (t.resources.get(claim) or {}).get("Properties") or {}
    found = {}
    for event in (props.get("Events") or {}).values():
        if event.get("Type") == "HttpApi":
            p = event.get("Properties") or {}
            found[(p.get("Method"), p.get("Path"))] = p
    problems = []
    for route in CLAIM_ROUTES:
        p = found.get(route)
        if p is None:
            problems.append(f"{claim} has no HttpApi event {route[0]} {route[1]}")
        elif str(p.get("PayloadFormatVersion")) != "2.0":
            problems.append(f"{route[0]} {route[1]}: PayloadFormatVersion must be \"2.0\"")
        elif t.ref_target(p.get("ApiId")) not in t.of_type("AWS::Serverless::HttpApi"):
            problems.append(f"{route[0]} {route[1]}: ApiId must !Ref the template's HttpApi")
    if problems:
        raise Problem("; ".join(problems))
    return "claim routes " + ", ".join(f"{m} {p}" for m, p in CLAIM_ROUTES) + f" -> {claim}"


CONSOLE_ROUTES = (("GET", "/console"), ("GET", "/console/{proxy+}"),
                  ("POST", "/console/{proxy+}"))


def check_console(t: Template) -> str:
    """The console function serves every /console path and can reach the dead letters."""
    console = t.functions_by_binary().get("console")
    props = (t.resources.get(console) or {}).get("Properties") or {}
    found = {((e.get("Properties") or {}).get("Method"), (e.get("Properties") or {}).get("Path"))
             for e in (props.get("Events") or {}).values() if e.get("Type") == "HttpApi"}
    problems = [f"{console} has no HttpApi event {m} {p}" for m, p in CONSOLE_ROUTES
                if (m, p) not in found]
    pollers = {t.ref_target(p["SQSPollerPolicy"].get("QueueName"))
               for p in props.get("Policies") or [] if isinstance(p, dict)
               and "SQSPollerPolicy" in p}
    for dlq in ("EnrichDLQ", "RouteDLQ", "NotifyDLQ"):
        if dlq not in pollers:
            problems.append(f"{console}: needs SQSPollerPolicy on {dlq} (the operations page)")
    if problems:
        raise Problem("; ".join(problems))
    return f"console routes GET/POST /console/* -> {console}, polls every DLQ"


def check_report_hours(t: Template) -> str:
    """The table streams new images to report-hours, retried until they succeed, and the
    console keeps its report buckets only because of it."""
    fname = t.functions_by_binary().get("report-hours")
    props = (t.resources.get(fname) or {}).get("Properties") or {}
    problems = []
    tables = t.of_type("AWS::DynamoDB::Table")
    table = next(iter(tables), None)
    view = (((tables.get(table) or {}).get("Properties") or {}).get("StreamSpecification") or {}
            ).get("StreamViewType")
    if view not in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
        problems.append(f"{table}: StreamSpecification.StreamViewType must include new images")
    streams = [e.get("Properties") or {} for e in (props.get("Events") or {}).values()
               if e.get("Type") == "DynamoDB"]
    if len(streams) != 1:
        problems.append(f"{fname} needs exactly one DynamoDB stream event, has {len(streams)}")
    else:
        s = streams[0]
        stream = s.get("Stream")
        if not (isinstance(stream, dict) and stream.get("Fn::GetAtt") in
                ([table, "StreamArn"], f"{table}.StreamArn")):
            problems.append(f"{fname}: Stream must be !GetAtt {table}.StreamArn")
        if s.get("StartingPosition") != "TRIM_HORIZON":
            problems.append(f"{fname}: StartingPosition must be TRIM_HORIZON (no write missed)")
        if s.get("MaximumRetryAttempts") != -1 or s.get("BisectBatchOnFunctionError") is not True:
            problems.append(f"{fname}: a batch is retried until it succeeds "
                            "(MaximumRetryAttempts -1, BisectBatchOnFunctionError)")
        patterns = " ".join(f.get("Pattern", "") for f in
                            (s.get("FilterCriteria") or {}).get("Filters") or [])
        if "LEAD#" not in patterns or "captured_at" not in patterns:
            problems.append(f"{fname}: FilterCriteria must keep lead items (LEAD#, captured_at) only")
    console = t.functions_by_binary().get("console")
    env = (((t.resources.get(console) or {}).get("Properties") or {}).get("Environment") or {}
           ).get("Variables") or {}
    if str(env.get("LEADRELAY_REPORT_HOURS_STREAM")).lower() != "true":
        problems.append(f"{console}: LEADRELAY_REPORT_HOURS_STREAM must be \"true\"")
    ages = [n for n, p, dims in _alarms(t) if p.get("MetricName") == "IteratorAge"
            and dims.get("FunctionName") == fname]
    if not ages:
        problems.append(f"{fname} has no IteratorAge alarm")
    if problems:
        raise Problem("; ".join(problems))
    return f"{table} streams new images to {fname} (retried, lead items only), alarmed by {ages[0]}"


def check_sla_watch(t: Template) -> str:
    """sla-watch runs on an enabled schedule, one run at a time, emits EMF, can reach notify,
    and an alarm counts the breaches it emits."""
    sla = t.functions_by_binary().get("sla")
    props = (t.resources.get(sla) or {}).get("Properties") or {}
    problems = []
    schedules = [e.get("Properties") or {} for e in (props.get("Events") or {}).values()
                 if e.get("Type") in ("Schedule", "ScheduleV2")]
    if len(schedules) != 1:
        problems.append(f"{sla} needs exactly one Schedule event, has {len(schedules)}")
    elif schedules[0].get("Enabled") is not True:
        problems.append(f"{sla}: the schedule must be Enabled: true")
    if props.get("ReservedConcurrentExecutions") != 1:
        problems.append(f"{sla}: ReservedConcurrentExecutions must be 1 (one sweep at a time)")
    env = ((props.get("Environment") or {}).get("Variables") or {})
    if env.get("LEADRELAY_METRICS") != "emf":
        problems.append(f"{sla}: LEADRELAY_METRICS must be emf (the breach metric)")
    sends = [p for p in props.get("Policies") or [] if isinstance(p, dict)
             and "SQSSendMessagePolicy" in p]
    if not any(t.ref_target(p["SQSSendMessagePolicy"].get("QueueName")) == "NotifyQueue"
               for p in sends):
        problems.append(f"{sla}: needs SQSSendMessagePolicy on the NotifyQueue")
    breach = [n for n, p, _ in _alarms(t)
              if p.get("Namespace") == "leadrelay" and p.get("MetricName") == "SlaBreaches"]
    if not breach:
        problems.append("no alarm on metric leadrelay/SlaBreaches")
    elif not _fires_on_first(t, t.resources[breach[0]]["Properties"]):
        problems.append(f"{breach[0]} must fire on the first breach (> 0)")
    if problems:
        raise Problem("; ".join(problems))
    return f"{sla}: enabled schedule, one at a time, EMF breaches alarmed by {breach[0]}"


CHECKS = (
    check_functions,
    check_panic_strategy,
    check_environment,
    check_http_routes,
    check_event_sources,
    check_notify_concurrency,
    check_redrive,
    check_retry_schedule,
    check_visibility,
    check_table,
    check_dlq_alarms,
    check_error_alarms,
    check_claim_routes,
    check_console,
    check_sla_watch,
    check_report_hours,
    check_outputs,
)


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else ROOT / "template.yaml"
    try:
        t = Template(path)
    except Exception as e:  # a parse error: say where, and stop
        print(f"FAIL parse {path}: {e}")
        return 1
    failed = 0
    for check in CHECKS:
        label = check.__name__.removeprefix("check_")
        try:
            print(f"ok   {label}: {check(t)}")
        except Problem as e:
            failed += 1
            print(f"FAIL {label}: {e}")
        except Exception as e:  # a shape the checker did not expect is a failure, not a crash
            failed += 1
            print(f"FAIL {label}: unexpected template shape ({type(e).__name__}: {e})")
    if failed:
        print(f"{path.name}: {failed} of {len(CHECKS)} checks failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
