"""The live server's admin resources under schemathesis's stateful testing.

The OpenAPI links of api/openapi.yaml (a dataset's name into POST /admin/train and /admin/eval,
a job's id into GET, DELETE and resume of the job, a finished job's model version and the
registry's versions into activate and delete, an activated name into GET /v1/models/{name})
make a state machine: hypothesis chains calls along them, with generated values (valid by the
schema) everywhere else, against a real server with the admin token, a registry of two
versions and one small dataset. Every answer must be no 5xx and conform to the contract: its
status is documented, its content type and headers are, and its body matches the response
schema. A version deleted with 200 must then be 404 to activate and delete (schemathesis's
use_after_free; not applied to the job routes, where DELETE cancels a job that stays listed).
"""
import collections
import os
import re
import shutil
import time

import pytest

from test_admin_fixture import AUTH, admin, admin_server, synth

# Bounded for CI (about a minute on two shared cores): runs of EXAMPLES scenarios of up to STEPS
# calls each, with new seeds until CALLS calls were made and every kind of transition below was
# seen, or BUDGET_S passed. ECSNET_STATEFUL_CALLS=5000 runs a longer campaign (about 2.5 min).
EXAMPLES = 25
STEPS = 12
CALLS = int(os.environ.get("ECSNET_STATEFUL_CALLS", "600"))
BUDGET_S = 75 * CALLS / 600


def _bounded_training(body):
    """A generated training request as cheap as the run's budget allows: the requested steps,
    batch and crop are capped (their values are still validated first), so the jobs the
    machine queues finish within the run and new model versions appear for the links to use."""
    if not isinstance(body, dict):
        return
    for key, cap in (("steps", 3), ("epochs", 1), ("batch_size", 2), ("crop", 32),
                     ("checkpoint_every", 2)):
        v = body.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > cap:
            body[key] = cap
    # the two big backbones from scratch cost tens of seconds a step here
    if body.get("backbone") in ("resnet38d", "vgg16d"):
        body["backbone"] = "small"


@pytest.fixture
def stateful_server(tmp_path, bin_path, repo_root):
    data = tmp_path / "data"
    synth(bin_path, data / "datasets" / "shapes", count=8, seed=5, size=64, classes=3)
    reg = data / "models" / "synth"
    reg.mkdir(parents=True)
    for v in (1, 2):
        shutil.copy(repo_root / "models" / "ecsnet-synth-small.safetensors",
                    reg / f"{v}.safetensors")
    (data / "models" / "ACTIVE").write_text("synth 1\n")
    s = admin_server(data)
    yield s
    s.stop()


def _state_machine(schema, monkeypatch):
    """schema.as_state_machine() with one rule per link. schemathesis 3.39 names a link's rule
    by its target operation and the source's status alone, so of two links into one operation
    from 200 answers (GET /admin/jobs and GET /admin/jobs/{id} into DELETE /admin/jobs/{id})
    only the last would get a rule, and the first's answers would wait in a bundle nothing
    reads; the numbered names keep every link."""
    import schemathesis.stateful.state_machine as sm

    plain = sm._normalize_name
    seen = collections.Counter()

    def numbered(name):
        n = plain(name)
        seen[n] += 1
        return n if seen[n] == 1 else f"{n}_{seen[n]}"

    with monkeypatch.context() as m:
        m.setattr(sm, "_normalize_name", numbered)
        return schema.as_state_machine()


def test_stateful_admin_workflows(stateful_server, monkeypatch):
    import hypothesis
    import schemathesis
    from hypothesis import HealthCheck, Phase
    from hypothesis.errors import FlakyStrategyDefinition
    from schemathesis import DataGenerationMethod
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (content_type_conformance,
                                                   response_headers_conformance,
                                                   response_schema_conformance,
                                                   status_code_conformance, use_after_free)

    s = stateful_server
    # valid values by the schema (the stateless test, test_server_schema.py, sends invalid ones)
    schema = schemathesis.from_uri(s.url + "/openapi.json",
                                   data_generation_methods=[DataGenerationMethod.positive])
    calls = collections.Counter()
    transitions = collections.Counter()
    failures = []
    # As schemathesis's own stateful runner: generation only. Replaying or shrinking a sequence
    # against a server whose state it changed (jobs finish, versions go) draws differently, which
    # hypothesis reports as a flaky strategy; such a run ends, and the next seed runs (a check
    # that fails, also one that does not fail again on a replay, fails the test).
    checks = (not_a_server_error, status_code_conformance, content_type_conformance,
              response_headers_conformance, response_schema_conformance)

    class AdminWorkflow(_state_machine(schema, monkeypatch)):
        def _add_results_to_targets(self, targets, results):
            # schemathesis 3.39 files each response under the bundle of its links by overriding
            # hypothesis's _add_result_to_targets; the pinned hypothesis (6.165) calls
            # _add_results_to_targets instead, so without this no link would ever be followed.
            for result in results:
                target = self._get_target_for_result(result) if result is not None else None
                if target is not None:
                    super()._add_results_to_targets((target,), [result])

        def get_call_kwargs(self, case):
            return {"headers": dict(AUTH), "timeout": 30}

        def before_call(self, case):
            if case.operation.path == "/admin/train":
                _bounded_training(case.body)

        def after_call(self, response, case):
            calls[(case.method.upper(), case.operation.path, response.status_code)] += 1
            if case.source is not None:
                transitions[case.operation.path] += 1

        def validate_response(self, response, case, additional_checks=()):
            extra = () if case.operation.path.startswith("/admin/jobs") else (use_after_free,)
            try:
                case.validate_response(response, checks=checks, additional_checks=extra)
            except AssertionError as e:  # kept, whatever hypothesis makes of the replay
                failures.append(f"{case.method.upper()} {case.formatted_path} -> "
                                f"{response.status_code}: {e}")
                raise

    settings = hypothesis.settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
        phases=[Phase.generate], suppress_health_check=list(HealthCheck))

    def missing():
        """The kinds of call the run must have made: the resources reached, not only the 4xx
        of generated values."""
        by = collections.Counter()
        for (m, p, st), k in calls.items():
            by[(m, p, st // 100)] += k
        job, ver = "/admin/jobs/{id}", "/admin/models/{name}/versions/{version}"
        want = {"dataset listed": by[("GET", "/admin/datasets", 2)],
                "training job queued": by[("POST", "/admin/train", 2)],
                "evaluation job queued": by[("POST", "/admin/eval", 2)],
                "job read": by[("GET", job, 2)],
                "job cancelled or refused": by[("DELETE", job, 2)] + by[("DELETE", job, 4)],
                "version activated": by[("POST", ver + "/activate", 2)],
                "version deleted or refused": by[("DELETE", ver, 2)] + by[("DELETE", ver, 4)],
                "a job id followed": transitions[job],
                "a dataset name followed": transitions["/admin/train"]}
        return [k for k, v in want.items() if not v]

    t0 = time.monotonic()
    runs = flaky = 0
    while True:
        runs += 1
        try:
            hypothesis.seed(20261203 + runs)(AdminWorkflow).run(settings=settings)
        except FlakyStrategyDefinition:
            flaky += 1
        if failures or time.monotonic() - t0 > BUDGET_S or \
                (sum(calls.values()) >= CALLS and not missing()):
            break
    took = time.monotonic() - t0

    assert not failures, "\n".join(failures[:5])
    n = sum(calls.values())
    summary = "\n".join(f"{m} {p} {st}: {k}" for (m, p, st), k in sorted(calls.items()))
    print(f"\nstateful: {n} calls, {sum(transitions.values())} along links, {runs} runs "
          f"({flaky} restarted), {took:.1f} s\n" + summary)
    assert n >= CALLS // 2, summary
    assert not missing(), (missing(), summary)

    jobs = admin(s, "GET", "/admin/jobs").json()["jobs"]
    errors = sorted({f'{j["kind"]} {j["status"]}: {j["error"]}' for j in jobs if j["error"]})
    print("jobs:", dict(collections.Counter(j["status"] for j in jobs)), *errors, sep="\n")
    # the server's own count agrees: not one 5xx on any route, and it still answers
    m = s.get("/metrics").text
    assert not re.search(r'ecsnet_requests_total\{[^}]*status="5\d\d"\} [1-9]', m), m
    assert s.get("/health/live").status_code == 200
    assert s.stop() == 0
