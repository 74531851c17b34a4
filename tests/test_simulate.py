"""Request-level simulator: exact roofline pricing, closed-form queueing limits, determinism, monotonicity."""
from __future__ import annotations


import numpy as np
import pytest
from hypothesis import example, given, settings

from conftest import examples
from hypothesis import strategies as st

from solver.calibration import PRIORS
from solver.catalog import find_gpu, find_model
from solver.engines import find_engine
from solver.roofline import Hardware, iteration_work, time_s
from solver.serving import Shape, online_state
from solver.simulate import IterationCost, simulate_replica
from solver.simulate_report import arrival_times

VLLM = find_engine("vllm")


def make_shape(model: str = "llama-3.1-8b", gpu: str = "H100", tp: int = 1, lin: int = 1024, lout: int = 256,
               offload: float = 0.0, dtype: str = "fp16") -> tuple[Shape, np.ndarray]:
    hw = Hardware.from_specs([find_gpu(gpu)], dtype)
    shape = Shape(find_model(model), hw, dtype, dtype, np.array([tp]), np.array([lin]), np.array([lout]),
                  np.array([offload]))
    return shape, PRIORS.theta_rows(VLLM, [gpu], dtype)[0]


def roofline_time(shape: Shape, theta: np.ndarray, d, c, p, a) -> float:
    w = iteration_work(shape.model, shape.hw, dtype=shape.dtype, kv_dtype=shape.kv_dtype, tp=shape.tp,
                       decode_seqs=d, decode_context_tokens=c, prefill_tokens=p, prefill_attention_pairs=a,
                       offload_ratio=shape.offload_ratio)
    return float(time_s(w, theta)[0])


@pytest.mark.parametrize("model,gpu,tp,offload", [("llama-3.1-8b", "H100", 1, 0.0),
                                                 ("llama-3.1-70b", "A100-80GB", 4, 0.0),
                                                 ("mixtral-8x7b", "H100", 2, 0.3), ("llama-3.1-8b", "L4", 1, 0.5)])
def test_iteration_cost_equals_roofline(model, gpu, tp, offload):
    shape, theta = make_shape(model, gpu, tp, offload=offload)
    cost = IterationCost(shape, theta, 8192)
    rng = np.random.default_rng(1)
    for _ in range(200):
        d = int(rng.integers(0, 300))
        p = int(rng.integers(0, 8192 - min(d, 8192)))
        if d + p == 0:
            continue
        c = float(d * rng.integers(1, 5000))
        a = float(p * rng.integers(0, 4000))
        assert cost.time(d, c, p, a) == pytest.approx(roofline_time(shape, theta, d, c, p, a), rel=1e-9)


@pytest.mark.parametrize("lin", [700, 3000, 20000])
def test_idle_ttft_is_own_chunked_prefill(lin):
    shape, theta = make_shape(lin=lin, lout=32)
    r = simulate_replica(shape, theta, VLLM, 64, np.array([0.0]), np.array([lin]), np.array([32]))
    chunk = VLLM.chunk_tokens
    expected, s = 0.0, 0
    while s < lin:
        c = min(chunk, lin - s)
        expected += roofline_time(shape, theta, 0, 0, c, c * s + c * c / 2.0)
        s += c
    assert r.ttft_s[0] == pytest.approx(expected, rel=1e-9)
    # decode alone: one sequence, contexts lin+1 .. lin+31
    dec = sum(roofline_time(shape, theta, 1, lin + g, 0, 0) for g in range(1, 32))
    assert r.e2e_s[0] == pytest.approx(expected + dec, rel=1e-9)
    if lin <= chunk:  # one chunk: the analytic model's idle TTFT is exactly the same prefill
        idle = online_state(shape, theta[None], VLLM, np.array([64.0]), np.array([1e-9]), {})
        assert r.ttft_s[0] == pytest.approx(float(idle.ttft_s[0]), rel=1e-6)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_single_slot_is_md1(rho):
    shape, theta = make_shape(lin=512, lout=1)
    service = roofline_time(shape, theta, 0, 0, 512, 512 * 512 / 2.0)
    n = 200_000
    arr = arrival_times(rho / service, n, "poisson", np.random.default_rng(7))
    r = simulate_replica(shape, theta, VLLM, 1, arr, np.full(n, 512), np.full(n, 1))
    assert np.allclose(r.e2e_s - r.queue_s, service)  # deterministic service
    md1 = rho * service / (2.0 * (1.0 - rho))
    assert np.mean(r.queue_s[n // 10:]) == pytest.approx(md1, rel=0.04)
    assert r.utilisation == pytest.approx(rho, rel=0.02)


def test_saturation_throughput_is_decode_bound():
    lin, lout, seqs = 32, 128, 16
    shape, theta = make_shape(lin=lin, lout=lout)
    n = 4000
    arr = np.linspace(0.0, 1.0, n)  # thousands of requests per second: far above capacity
    r = simulate_replica(shape, theta, VLLM, seqs, arr, np.full(n, lin), np.full(n, lout))
    done = np.sort(arr + r.e2e_s)
    lo, hi = n // 4, 3 * n // 4
    thr = (hi - lo) / (done[hi] - done[lo])
    t_iter = roofline_time(shape, theta, seqs, seqs * (lin + lout / 2.0), 0, 0)
    assert thr == pytest.approx(seqs / (lout * t_iter), rel=0.03)
    assert r.max_queue > n / 2


def test_deterministic_by_seed():
    shape, theta = make_shape()
    def run(seed):
        rng = np.random.default_rng(seed)
        arr = arrival_times(8.0, 3000, "gamma:2", rng)
        lin = rng.integers(100, 3000, arr.size)
        return simulate_replica(shape, theta, VLLM, 64, arr, lin, np.full(arr.size, 200))
    a, b, c = run(3), run(3), run(4)
    assert np.array_equal(a.e2e_s, b.e2e_s) and np.array_equal(a.ttft_s, b.ttft_s)
    assert not np.array_equal(a.e2e_s, c.e2e_s)


def test_kv_capacity_preempts_and_recomputes():
    shape, theta = make_shape(lin=2000, lout=400)
    n = 400
    arr = arrival_times(15.0, n, "poisson", np.random.default_rng(2))
    free = simulate_replica(shape, theta, VLLM, 64, arr, np.full(n, 2000), np.full(n, 400))
    tight = simulate_replica(shape, theta, VLLM, 64, arr, np.full(n, 2000), np.full(n, 400),
                             kv_capacity_tokens=30_000)
    assert free.preemptions == 0 and tight.preemptions > 0
    assert np.all(np.isfinite(tight.e2e_s)) and np.mean(tight.e2e_s) > np.mean(free.e2e_s)
    off, _ = make_shape(lin=2000, lout=400, offload=0.5)
    r = simulate_replica(off, theta, VLLM, 64, arr, np.full(n, 2000), np.full(n, 400), kv_capacity_tokens=30_000)
    assert r.preemptions == 0


def test_static_batches_match_static_latency():
    from solver.prefill import static_latency
    flex = find_engine("flexgen")
    shape, theta = make_shape(lin=512, lout=64)
    theta = PRIORS.theta_rows(flex, ["H100"], "fp16")[0]
    r = simulate_replica(shape, theta, flex, 8, np.zeros(8), np.full(8, 512), np.full(8, 64))
    ttft, tpot = static_latency(shape, theta[None], np.array([8.0]), flex.chunk_tokens)
    assert np.allclose(r.ttft_s, ttft[0], rtol=1e-9)
    assert np.allclose(r.tpot_s, tpot[0], rtol=1e-6)


def test_trace_arrivals(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("ts\n0\n0.5\n1.0\n2.0\n", encoding="utf-8")
    a = arrival_times(0.0, 6, f"trace:{path}", np.random.default_rng(0))
    assert a.tolist() == pytest.approx([0, 0.5, 1.0, 2.0, 8 / 3, 8 / 3 + 0.5])
    with pytest.raises(ValueError):
        arrival_times(1.0, 5, "uniform", np.random.default_rng(0))


@settings(max_examples=examples(6), deadline=None)
@given(frac=st.floats(0.2, 0.9), count=st.integers(1, 3), seed=st.integers(0, 1000))
@example(frac=0.4375, count=3, seed=0)
def test_more_replicas_never_raise_percentiles(frac, count, seed):
    from solver.simulate import route_and_simulate
    shape, theta = make_shape(lin=800, lout=128)
    rate = frac * count * 10.0
    n = 3000
    rng = np.random.default_rng(seed)
    arr = arrival_times(rate, n, "poisson", rng)
    lin, lout = np.full(n, 800), np.full(n, 128)
    base = route_and_simulate(shape, theta, VLLM, 64, count, arr, lin, lout, None)
    more = route_and_simulate(shape, theta, VLLM, 64, count + 1, arr, lin, lout, None)
    # Round-robin routing gives each replica a different sample of the arrivals when a replica is added, so a
    # percentile of a finite run is not pathwise monotone: at light load TTFT is the request's own prefill and
    # p50 moves by sampling noise (0.4 % seen at 44 % load, 3 -> 4 replicas). Allow that noise, no more.
    noise = 0.02
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        x, y = getattr(base, key)[n // 10:], getattr(more, key)[n // 10:]
        for q in (50, 90, 99):
            assert np.percentile(y, q) <= np.percentile(x, q) * (1 + noise), (key, q)


SCENARIO = """
name: sim-test
clouds: [aws]
workloads:
  - name: chat
    model: llama-3.1-8b
    request_rate_per_s: 6
    buckets:
      - {input_tokens: 512, output_tokens: 128, fraction: 0.7}
      - {input_tokens: 2048, output_tokens: 256, fraction: 0.3}
    slo: {max_ttft_s: %s, max_tpot_s: 0.05}
  - name: batch
    model: llama-3.1-8b
    mode: offline
    input_tokens: 1024
    output_tokens: 128
    num_requests: 5000
    deadline_hours: %s
"""


def _plan(tmp_path, ttft_bound: float, deadline_h: float):
    import json
    scen = tmp_path / "s.yaml"
    scen.write_text(SCENARIO % (ttft_bound, deadline_h), encoding="utf-8")
    pool = "llama-3.1-8b|aws:us-east-1:p5.4xlarge:on_demand|tp1|b64|r0.00"
    common = dict(pool=pool, instance_type="p5.4xlarge", gpu="H100", gpu_count=1, tp=1, count=2, batch_size=64,
                  offload_ratio=0.0)
    plan = {"assignments": [dict(workload="chat", demand="chat#0", share=1.0, **common),
                            dict(workload="chat", demand="chat#1", share=1.0, **common),
                            dict(workload="batch", demand="batch", share=1.0, **{**common, "pool": "off",
                                                                                   "count": 1})],
            "pools": [{"pool": pool, "count": 2}, {"pool": "off", "count": 1}]}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan), encoding="utf-8")
    return scen, path


def test_simulate_command_holds_and_fails(tmp_path):
    import json
    from solver.simulate_report import run_simulate_command
    scen, plan = _plan(tmp_path, 2.0, 8.0)
    text, rc, _ = run_simulate_command(scen, plan, requests=3000, seed=1, fmt="json")
    data = json.loads(text)
    assert rc == 0 and data["holds"] and data["workloads"][0]["requests"] == 2700
    assert data["pools"][0]["replicas"] == 2 and data["workloads"][1]["makespan_h"] < 8.0
    text2, _, _ = run_simulate_command(scen, plan, requests=3000, seed=1, fmt="json")
    assert text2 == text  # deterministic by seed
    scen, plan = _plan(tmp_path, 0.001, 0.001)
    text, rc, _ = run_simulate_command(scen, plan, requests=3000, seed=1)
    assert rc == 1 and "SLO VIOLATED" in text
    assert text.splitlines()[-1].startswith("chat: simulated TTFT mean =")


def test_a_short_replay_of_a_batch_job_reads_its_makespan_in_whole_batches(tmp_path):
    """A job longer than --requests is replayed in whole batches (5,000 requests in batches of 64 from 700: 640)
    and the rest extrapolated at the throughput between batch ends: within 1 % of the full replay's makespan. It
    replayed a partial batch and took the throughput between quartiles that cut batches: a fuzzed plan read 0.510 h
    from 3,000 requests against 0.499 h in full, past its 0.5-h deadline."""
    import json
    from solver.simulate_report import run_simulate_command
    scen, plan = _plan(tmp_path, 2.0, 8.0)
    makespan = {}
    for requests in (700, 5000):
        text, _, _ = run_simulate_command(scen, plan, requests=requests, seed=1, fmt="json")
        batch = json.loads(text)["workloads"][1]
        assert batch["parts"][0]["simulated_per_replica"] == {700: 640, 5000: 5000}[requests]  # 10 whole batches
        makespan[requests] = batch["makespan_h"]
    assert makespan[700] == pytest.approx(makespan[5000], rel=0.01)


def test_simulate_json_stays_one_document_when_a_bound_misses(tmp_path):
    """With --format json stdout is the report alone, also on exit 1 (a pipe into a JSON reader, an Airflow task);
    the line naming the missed bound goes to stderr."""
    import json
    from conftest import run_cli
    scen, plan = _plan(tmp_path, 0.001, 0.001)
    result = run_cli(["simulate", scen, plan, "--requests", "300", "--format", "json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["holds"] is False and data["failures"]
    assert result.stderr.strip().startswith("chat: simulated TTFT mean =")


def test_lognormal_lengths_have_the_asked_mean_and_p90():
    from solver.simulate_report import lognormal_lengths
    x = lognormal_lengths(512, 1024, 200_000, np.random.default_rng(0))
    assert x.mean() == pytest.approx(512, rel=0.01)
    assert np.percentile(x, 90) == pytest.approx(1024, rel=0.02)
    assert (lognormal_lengths(300, None, 10, np.random.default_rng(0)) == 300).all()


def test_length_spread_is_validated_and_simulated(tmp_path):
    import solver
    from solver.errors import ScenarioError
    from solver.simulate_report import simulate_plan

    base = (SCENARIO % ("2.0", "24")).replace("""    buckets:
      - {input_tokens: 512, output_tokens: 128, fraction: 0.7}
      - {input_tokens: 2048, output_tokens: 256, fraction: 0.3}""", """    input_tokens: 1024
    output_tokens: 256
    output_tokens_p90: 512""")
    path = tmp_path / "spread.yaml"
    path.write_text(base)
    plan = solver.plan(str(path))
    report = simulate_plan(str(path), plan.model_dump(), requests=3000, seed=1)
    tpot = next(w for w in report.workloads if w["workload"] == "chat")["tpot"]
    assert tpot["p99"] >= tpot["p50"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(base.replace("output_tokens_p90: 512", "output_tokens_p90: 5000"))
    with pytest.raises(ScenarioError, match="output_tokens_p90"):
        solver.load_scenario(str(bad))


def test_feedback_dispersion_hand_worked():
    """Poisson without feedback; a prompt share phi alone gives 1 / (1 - phi); decode elasticity adds its weight."""
    from solver.queueing import DECODE_FEEDBACK, feedback_dispersion
    out = feedback_dispersion(np.array([0.0, 0.5, 0.0, 0.5]), np.array([0.0, 0.0, 0.5, 0.5]))
    expect = [1.0, 2.0, 1.0 / (1.0 - 0.5 * DECODE_FEEDBACK), 1.0 / (1.0 - 0.5 - 0.25 * DECODE_FEEDBACK)]
    assert np.allclose(out, expect)
    assert np.all(np.diff(feedback_dispersion(np.linspace(0.0, 0.85, 50), np.zeros(50))) > 0)


def test_slots_near_the_planning_share_queue_as_simulated():
    """42 slots of an A10G at 90 % of the planning capacity: prompts stall every running decode, so the slots held
    spread far wider than Poisson and a slot is held longer when more are; the Poisson-count model said 700 ms mean
    TTFT against 1,044 ms simulated (-33 %), the elastic chain says 922 against 924 ms."""
    from solver.serving import online_capacity
    shape, row = make_shape(gpu="A10G")
    theta, slots = row[None, :], 42.0
    rate = 0.9 * float(online_capacity(shape, theta, VLLM, np.array([slots]), {}, {})[0])
    n = 100000
    arr = np.cumsum(np.random.default_rng(3).exponential(1.0 / rate, n))
    sim = simulate_replica(shape, row, VLLM, int(slots), arr, np.full(n, 1024), np.full(n, 256))
    simulated = float(np.mean(sim.ttft_s[n // 10:]))
    predicted = float(online_state(shape, theta, VLLM, np.array([slots]), np.array([rate]), {}).ttft_s[0])
    assert abs(predicted / simulated - 1.0) < 0.15, (predicted, simulated)


def test_compound_poisson_pmf_matches_poisson_and_its_mean():
    """One prompt length: the Poisson pmf at its multiples; a mix: the mean tokens of the count times E[L]."""
    from scipy.stats import poisson

    from solver.queueing import compound_poisson_pmf
    tokens, pmf = compound_poisson_pmf(1.7, np.array([300.0]), np.array([1.0]), top=30000.0, cells=300)
    at = np.isin(tokens, 300.0 * np.arange(12))
    assert np.allclose(pmf[at], poisson.pmf(np.arange(12), 1.7), atol=1e-12)
    tokens, pmf = compound_poisson_pmf(2.5, np.array([200.0, 1000.0]), np.array([0.7, 0.3]), top=40000.0, cells=400)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-9)
    assert pmf @ tokens == pytest.approx(2.5 * (0.7 * 200 + 0.3 * 1000), rel=1e-9)


def test_a_pool_of_two_prompt_lengths_decodes_as_simulated():
    """256- and 1,024-token prompts on one L40S at 90 % of capacity: the step's prompt tokens are a compound
    Poisson of the two lengths (one size-biased lump overstated TPOT by 4 %, slots held by 3 %)."""
    from solver.serving import online_capacity
    from solver.shape import mix_shape
    hw = Hardware.from_specs([find_gpu("L40S")], "fp16")
    lengths = np.array([256, 1024])
    shape, scv = mix_shape(find_model("llama-3.1-8b"), hw, "fp16", "fp16", 1, 0.0, np.array([0.5, 0.5]), lengths,
                           np.array([192, 192]))
    theta = PRIORS.theta_rows(VLLM, ["L40S"], "fp16")
    rate = 0.9 * float(online_capacity(shape, theta, VLLM, np.array([128.0]), {}, {})[0])
    n = 60000
    rng = np.random.default_rng(0)
    arr = np.cumsum(rng.exponential(1.0 / rate, n))
    sim = simulate_replica(shape, theta[0], VLLM, 128, arr, lengths[rng.integers(0, 2, n)], np.full(n, 192))
    state = online_state(shape, theta, VLLM, np.array([128.0]), np.array([rate]), {}, scv)
    assert abs(state.tpot_s[0] / np.mean(sim.tpot_s[n // 10:]) - 1.0) < 0.03
    assert abs(state.occupancy[0] / 128.0 / sim.occupancy - 1.0) < 0.03


def _exponential_quantile(p_wait, mean_given_wait, q):
    """Quantile of a wait that is 0 with probability 1 - p_wait and exponential otherwise (closed form)."""
    tail = 1.0 - q
    return np.where(p_wait > tail, mean_given_wait * np.log(np.maximum(p_wait, 1e-300) / tail), 0.0)


def _residual_quantile(busy, share, t_mix, t_dec, q):
    """Quantile of the running iteration's rest alone: the piecewise-linear tail
    P(R > x) = busy (s (1 - x / long)^+ + (1 - s) (1 - x / short)^+), s the time share of the long iterations."""
    long, short = np.maximum(t_mix, t_dec), np.minimum(t_mix, t_dec)
    frac = np.where(t_mix >= t_dec, share, 1.0 - share)
    s = frac * long / (frac * long + (1.0 - frac) * short)
    tail = 1.0 - q
    beyond = long * (1.0 - tail / np.maximum(busy * s, 1e-300))  # the quantile if it lies past the short ones
    within = (1.0 - tail / busy) / (s / long + (1.0 - s) / short)
    return np.where(busy > tail, np.maximum(np.where(beyond >= short, beyond, within), 0.0), 0.0)


@pytest.mark.parametrize("p_slot,m_slot,p_budget,m_budget,p_step", [(0.2, 0.5, 0.4, 0.1, 0.0), (0.01, 0.5, 0.4, 0.1, 0.3),
                                                                    (0.5, 2.0, 0.6, 0.2, 0.1), (0.001, 0.1, 0.2, 0.05, 0.0),
                                                                    (0.0, 0.1, 0.02, 0.015, 0.05)])
def test_total_wait_quantile_against_monte_carlo(p_slot, m_slot, p_budget, m_budget, p_step):
    """Three independent waits (slot, budget, the running iteration's rest) and a two-point packing delay: the
    quantile from the sum's tail is exact (a one-million-draw Monte Carlo within 1.5 %) and equals an exponential
    wait's own quantile when it is the only part; the sum of the parts' quantiles is not."""
    from solver.wait_tail import total_wait_quantile
    zero, one = np.zeros(1), np.ones(1)
    for q in (0.9, 0.99):
        exact = _exponential_quantile(np.array([p_slot]), np.array([m_slot]), q)[0]
        alone = total_wait_quantile(q, zero, [(zero, zero)], [(np.array([p_slot]), np.array([m_slot]))])[0]
        assert alone == pytest.approx(exact, rel=1e-6, abs=1e-9)
    rng = np.random.default_rng(5)
    n = 1_000_000
    busy, share, t_mix, t_dec, delay = 0.9, 0.3, 0.2, 0.04, 0.15
    slot = np.where(rng.random(n) < p_slot, rng.exponential(m_slot, n), 0.0)
    budget = np.where(rng.random(n) < p_budget, rng.exponential(m_budget, n), 0.0)
    long_ = rng.random(n) < share * t_mix / (share * t_mix + (1 - share) * t_dec)
    residual = np.where(rng.random(n) < busy, rng.random(n) * np.where(long_, t_mix, t_dec), 0.0)
    step = np.where(rng.random(n) < p_step, delay, 0.0)
    args = (np.array([busy]), [(share * one, t_mix * one), ((1 - share) * one, t_dec * one)])
    waits = [(np.array([p_slot]), np.array([m_slot])), (np.array([p_budget]), np.array([m_budget]))]
    for q in (0.5, 0.9, 0.99):
        truth = np.quantile(slot + budget + residual + step, q)
        fitted = total_wait_quantile(q, *args, waits, (p_step * one, delay * one))[0]
        assert fitted == pytest.approx(truth, rel=0.015, abs=1e-4)
        if p_step == 0.0 and q > 0.5:
            summed = (_exponential_quantile(np.array([p_slot]), np.array([m_slot]), q)[0]
                      + _exponential_quantile(np.array([p_budget]), np.array([m_budget]), q)[0]
                      + _residual_quantile(busy, share, t_mix, t_dec, q))
            assert abs(fitted - truth) < abs(summed - truth)


def test_renewal_wait_ratios_are_one_for_poisson_and_fall_with_smoother_gaps():
    """k = 1 is the Poisson stream itself; an Erlang-k stream of the same rate finds the server busy less often
    and waits less when it does, the more so the larger k; at light load P(wait) falls like (rate S)^(k-1)."""
    from solver.queueing import renewal_wait_ratios
    rate, service = np.full(4, 4.0), np.full(4, 0.08)
    rho, poisson_wait = rate * service, service / (2.0 * (1.0 - rate * service))  # M/D/1
    found, shorter = renewal_wait_ratios(np.array([1.0, 2.0, 3.0, 6.0]), rate, service, rho, poisson_wait)
    assert found[0] == pytest.approx(1.0) and shorter[0] == pytest.approx(1.0)
    assert np.all(np.diff(found) < 0) and np.all(np.diff(shorter) < 0)
    slow = np.array([0.01, 0.001])
    light, _ = renewal_wait_ratios(np.array([3.0, 3.0]), slow, np.full(2, 0.08), slow * 0.08,
                                   np.full(2, 0.08) / (2.0 * (1.0 - slow * 0.08)))
    assert light[1] / light[0] == pytest.approx(0.01, rel=0.05)


def test_elastic_erlang_c_is_erlang_c_without_feedback_and_its_chain_with_it():
    """eps = 0: Erlang C. eps > 0: P(wait) and the queue's drain of the birth-death chain whose departure rate at
    k busy slots is k / H(k), H(k) = H (1 + eps (k - a) / a), summed state by state."""
    from solver.queueing import elastic_erlang_c, erlang_c
    servers, load = np.array([1, 8, 40, 40]), np.array([0.6, 5.0, 30.0, 36.0])
    p, a_c = elastic_erlang_c(servers, load, np.zeros(4))
    assert np.allclose(p, erlang_c(servers, load), rtol=1e-12) and np.allclose(a_c, load)
    c, a, eps, lam = 40, 30.0, 0.5, 1.0  # lam = 1, so H = a
    mu = [k / (a * (1 + eps * (k - a) / a)) for k in range(1, c + 1)]
    weights = np.cumprod([1.0] + [lam / m for m in mu])  # states 0..c
    rho_c = lam / mu[-1]
    full = weights[-1] / (1.0 - rho_c)  # c and above
    p_chain = full / (weights[:-1].sum() + full)
    p, a_c = elastic_erlang_c(np.array([c]), np.array([a]), np.array([eps]))
    assert p[0] == pytest.approx(p_chain, rel=1e-9)
    assert a_c[0] == pytest.approx(rho_c * c, rel=1e-12)
    more = elastic_erlang_c(np.array([c, c]), np.array([a, a]), np.array([0.2, 0.6]))[0]
    assert erlang_c(np.array([c]), np.array([a]))[0] < more[0] < more[1]


def test_renewal_count_is_poisson_for_one_phase_and_an_erlang_streams_otherwise():
    """One phase: the Poisson pmf. k phases: the mean is kept, two arrivals in one window are rarer, and the pmf is
    that of windows laid at random over an Erlang-k stream (Monte Carlo, 200,000 windows, within 0.005)."""
    from scipy.stats import poisson

    from solver.queueing import renewal_count_pmf
    assert np.allclose(renewal_count_pmf(0.4, 1.0, 8), poisson.pmf(np.arange(9), 0.4), atol=1e-14)
    for k in (2, 3):
        pmf = renewal_count_pmf(0.7, float(k), 40)
        assert pmf.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.arange(41) @ pmf == pytest.approx(0.7, rel=1e-9)
        assert pmf[2:].sum() < poisson.sf(1, 0.7)
        rng = np.random.default_rng(k)
        arrivals = np.cumsum(rng.gamma(k, 1.0 / k, 2_000_000))  # rate 1
        starts = rng.uniform(100.0, arrivals[-1] - 100.0, 200_000)
        counts = np.searchsorted(arrivals, starts + 0.7) - np.searchsorted(arrivals, starts)
        assert np.allclose(np.bincount(counts, minlength=5)[:5] / counts.size, pmf[:5], atol=0.005)


def test_compound_pmf_of_a_renewal_count_keeps_its_mean():
    """An Erlang-2 count of a prompt mix: the same mean tokens as the Poisson count, less mass beyond one prompt."""
    from solver.queueing import compound_poisson_pmf
    lengths, weights = np.array([300.0, 1000.0]), np.array([0.6, 0.4])
    t1, p1 = compound_poisson_pmf(0.4, lengths, weights, top=8000.0)
    t2, p2 = compound_poisson_pmf(0.4, lengths, weights, top=8000.0, phases=2.0)
    assert p2.sum() == pytest.approx(1.0, abs=1e-12)
    assert p2 @ t2 == pytest.approx(p1 @ t1, rel=1e-6)
    assert p2[t2 > 1000.0].sum() < p1[t1 > 1000.0].sum()


@pytest.mark.parametrize("scv", [0.5, 0.7, 1.0])
def test_two_phase_wait_quantile_against_monte_carlo(scv):
    """A wait that is positive with probability p and then the sum of two exponential phases of squared coefficient
    of variation scv (1: one exponential), beside a second exponential wait: quantiles within 1.5 % of Monte Carlo."""
    from solver.wait_tail import total_wait_quantile
    zero, one = np.zeros(1), np.ones(1)
    root = np.sqrt(max(2.0 * scv - 1.0, 0.0))
    a, b = (1.0 + root) / 2.0, (1.0 - root) / 2.0
    rng = np.random.default_rng(9)
    n = 1_000_000
    slot = np.where(rng.random(n) < 0.3, rng.exponential(a, n) + rng.exponential(max(b, 1e-12), n), 0.0)
    budget = np.where(rng.random(n) < 0.4, rng.exponential(0.1, n), 0.0)
    for q in (0.9, 0.99):
        fitted = total_wait_quantile(q, zero, [(zero, zero)], [(0.3 * one, one, scv * one), (0.4 * one, 0.1 * one)])
        assert fitted[0] == pytest.approx(np.quantile(slot + budget, q), rel=0.015)


def test_one_of_several_waits_quantile_against_monte_carlo():
    """The wait for the prompt found ahead is one of several sizes' waits (a mixture, not their sum), beside a slot
    wait and the rest of an iteration of one of three lengths: quantiles within 1.5 % of Monte Carlo."""
    from solver.wait_tail import total_wait_quantile
    one = np.ones(1)
    rng = np.random.default_rng(13)
    n = 1_000_000
    busy, kinds = 0.8, [(0.5, 0.03), (0.3, 0.08), (0.2, 0.2)]  # (share of iterations, length)
    alternatives = [(0.3, 0.05), (0.1, 0.4)]  # (P, mean) of each size's wait; none with 0.6
    slot = np.where(rng.random(n) < 0.05, rng.exponential(0.5, n), 0.0)
    weights = np.array([f * t for f, t in kinds])
    lengths = np.array([t for _, t in kinds])[rng.choice(3, size=n, p=weights / weights.sum())]
    residual = np.where(rng.random(n) < busy, rng.random(n) * lengths, 0.0)
    pick = rng.choice(3, size=n, p=[0.3, 0.1, 0.6])
    budget = np.where(pick == 0, rng.exponential(0.05, n), np.where(pick == 1, rng.exponential(0.4, n), 0.0))
    for q in (0.5, 0.9, 0.99):
        fitted = total_wait_quantile(q, busy * one, [(f * one, t * one) for f, t in kinds], [(0.05 * one, 0.5 * one)],
                                     one_of=[(p * one, m * one) for p, m in alternatives])
        assert fitted[0] == pytest.approx(np.quantile(slot + residual + budget, q), rel=0.015)


def test_holding_scv():
    """One holding time: 0. Two equally likely times 1 and 3: E[H^2] / E[H]^2 - 1 = 5 / 4 - 1."""
    from solver.queueing import holding_scv
    assert holding_scv(np.array([7.0, 7.0]), np.array([0.3, 0.7])) == pytest.approx(0.0, abs=1e-12)
    assert holding_scv(np.array([1.0, 3.0]), np.array([1.0, 1.0])) == pytest.approx(0.25)


def test_holding_overlap():
    """One holding time: 1. Two equally likely times 1 and 3: E[min] = (1 + 1 + 1 + 3) / 4 = 1.5, E[H] = 2."""
    from solver.queueing import holding_overlap
    assert holding_overlap(np.array([7.0, 7.0]), np.array([0.3, 0.7])) == pytest.approx(1.0)
    assert holding_overlap(np.array([1.0, 3.0]), np.array([1.0, 1.0])) == pytest.approx(0.75)


@pytest.mark.parametrize("name", ["chat_fleet", "sweep_base", "mixed_spot_quota"])
def test_bundled_promises_agree_with_their_replay(name):
    """Each SLO promise of a bundled plan (its statistic at the planned load) against the request-level replay of
    the same plan (60,000 requests): TPOT within 5 %; TTFT within 25 % where the workload's pools hold at most 75 %
    of their slots (measured over seeds 0-1: TPOT within 3 %, TTFT −6..+7 %). Nearer the planning share (85 %) a replica's TTFT is mostly its wait for a
    slot, whose mean converges slowly in a replay (a 16-slot H100 for code-32b at 81 % in an earlier plan: +53..+57 %
    against 60,000 requests, +8 % against the 150,000 of benchmarks/simulate.py): there the promise must stay
    conservative (no more than 10 % below the replay) and within 3x of it. bucketed_mix, planned at a pool's knee, is a known exception: README
    "Plans that keep their promises"."""
    import solver
    from solver.resources import scenario_dir
    from solver.simulate_report import simulate_plan
    path = str(scenario_dir() / f"{name}.yaml")
    plan = solver.plan(path)
    report = simulate_plan(path, plan.model_dump(), requests=60000, seed=0)
    simulated = {w["workload"]: w for w in report.workloads if w.get("mode") == "online"}
    held = {p["pool"]: p["slot_occupancy"] for p in report.pools}
    near_cap = {a.workload for a in plan.assignments if held.get(a.pool, 0.0) > 0.75}
    assert plan.slo_report
    for p in plan.slo_report:
        replayed = simulated[p.workload][p.metric][p.statistic]
        ratio = p.predicted_s / replayed
        if p.metric == "ttft" and p.workload in near_cap:
            assert 0.9 < ratio < 3.0, (p.workload, p.metric, p.predicted_s, replayed)
            continue
        tolerance = 0.05 if p.metric == "tpot" else 0.25
        assert abs(ratio - 1.0) < tolerance, (p.workload, p.metric, p.predicted_s, replayed)


def test_a_mix_of_prompt_lengths_widens_the_clusters_and_the_departures():
    from solver.queueing import mix_cluster_spread, mix_departure_scv
    phi = np.array([0.1, 0.4, 0.6])
    assert np.allclose(mix_cluster_spread(phi, 0.0, np.ones(3)), 1.0)  # one prompt length: no change
    assert np.allclose(mix_departure_scv(phi, 0.0), 0.0)
    poisson, round_robin = mix_cluster_spread(phi, 1.0, np.ones(3)), mix_cluster_spread(phi, 1.0, np.full(3, 1 / 3))
    assert np.all(np.diff(poisson) > 0) and np.all(round_robin > poisson)  # the router smooths arrivals, not stalls
    assert poisson == pytest.approx(1.0 + phi**2)
    assert mix_departure_scv(phi, 2.0) == pytest.approx(2.0 * (phi / (1.0 - phi)) ** 2)
