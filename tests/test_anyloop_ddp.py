"""Two real processes over torch.distributed (gloo on CPU): rank 0's mixer decides and every rank
trains on its weights, the mixer sees the per-domain sums over ranks, and the ranks train on
different examples. Both examples under torchrun, read from each rank's `--trace`
(examples/_example_common.StepTrace), and a feedback whose ranks' own mixers disagree, built before
the process group (as a Trainer script builds it), on two spawned processes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_anyloop_dataset import SPAN, sources
from torch.utils.data import default_collate

from acodm_ray.anyloop import MixingDataset, MixingFeedback
from acodm_ray.config import ModelConfig
from acodm_ray.mixers.odm import ODMMixer
from acodm_ray.mixers.static import StaticMixer
from acodm_ray.model import build_model
from acodm_ray.signals import domain_means

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # every test trains on two processes (torchrun, mp.spawn)
DOMAINS = [
    "python_code",
    "legal",
    "dictionary",
]  # 3 domains: ODM's exploration floor leaves uniform at step 4
STEPS, MICRO, ACCUM = 8, 4, 2
COMMON = [
    "--config",
    str(ROOT / "configs" / "tiny.yaml"),
    "--steps",
    str(STEPS),
    "--trace",
    "--set",
    f"corpus.domains=[{','.join(DOMAINS)}]",
    "--set",
    f"train.micro_batch_size={MICRO}",
    "--set",
    f"train.grad_accum={ACCUM}",
    "--set",
    "train.warmup_steps=1",
    "--set",
    "agent.batch_size=2",
    "--set",
    "agent.warmup_fraction=0.25",
    "--set",
    "agent.warmup_updates=2",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(script, out, *args):
    """`torchrun --nproc_per_node 2 examples/<script> ...`; each rank's trace, rank 0's summary."""
    env = dict(
        os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT)
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(ROOT / "examples" / script),
        *COMMON,
        *args,
        "--output",
        str(out),
    ]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, cwd=out.parent, timeout=300
        )
    except (
        subprocess.TimeoutExpired
    ) as err:  # say where the ranks were, not only that they were slow
        tail = [
            (x or b"")[-3000:].decode(errors="replace")
            if isinstance(x, bytes)
            else (x or "")[-3000:]
            for x in (err.stdout, err.stderr)
        ]
        pytest.fail(
            f"torchrun did not finish in 300 s; stdout tail:\n{tail[0]}\nstderr tail:\n{tail[1]}"
        )
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    traces = [
        [json.loads(line) for line in (out / f"trace.rank{r}.jsonl").read_text().splitlines()]
        for r in (0, 1)
    ]
    assert [len(t) for t in traces] == [STEPS, STEPS]
    return traces, json.loads((out / "summary.json").read_text())


def check_one_mix_over_two_ranks(traces, summary):
    """Both ranks drew with, and published, bitwise the same weights every step; the mixer saw both
    ranks' sequences; each rank trained on its own examples."""
    r0, r1 = traces
    assert summary["world_size"] == 2 and summary["domains"] == DOMAINS
    rank1 = json.loads(Path(summary["output"], "summary.rank1.json").read_text())
    assert rank1["weights"] == summary["weights"]  # the whole history, initial decision included
    for a, b in zip(r0, r1):
        assert a["weights"] == b["weights"] and a["decided"] == b["decided"], a["step"]
        both = np.add(a["rank_counts"], b["rank_counts"])
        np.testing.assert_array_equal(a["counts"], both)
        np.testing.assert_array_equal(b["counts"], both)
        assert sum(a["rank_counts"]) == sum(b["rank_counts"]) == MICRO * ACCUM
        assert len(a["examples"]) == len(b["examples"]) == MICRO * ACCUM
        assert a["examples"] != b["examples"], a["step"]
    seen = [{x for t in trace for x in t["examples"]} for trace in traces]
    assert (
        len(seen[0] & seen[1]) <= 2
    )  # random windows of a small corpus may meet; two streams would not
    assert [t["decided"] for t in r0] == summary["weights"][1:]
    w = np.array(summary["weights"])
    assert not np.allclose(w[-1], w[-2]) or not np.allclose(w[-2], w[-3])  # still moving at the end


def check_odm_decided_from_the_sums_over_ranks(traces, summary):
    """Replaying ODM on the per-domain loss sums and tokens added over both ranks gives exactly the
    decisions of the run; on rank 0's own share alone it would not."""
    initial = np.array(summary["weights"][0])  # ODM starts at the natural proportions
    summed, alone = ODMMixer(DOMAINS, initial), ODMMixer(DOMAINS, initial)
    differs = False
    for a, b in zip(*traces):
        losses = domain_means(
            np.add(a["rank_loss_sums"], b["rank_loss_sums"]),
            np.add(a["rank_tokens"], b["rank_tokens"]),
        )
        np.testing.assert_array_equal(a["losses"], losses)
        np.testing.assert_allclose(
            summed.update_from_losses(losses), a["decided"], rtol=1e-12, atol=0
        )
        own = alone.update_from_losses(
            domain_means(np.array(a["rank_loss_sums"]), np.array(a["rank_tokens"]))
        )
        differs |= not np.allclose(own, a["decided"], rtol=1e-9)
    assert differs  # a run in which a rank deciding on its own would have trained on another mix


def test_torch_loop_on_two_processes_trains_every_rank_on_rank_0s_odm_weights(tmp_path):
    traces, summary = torchrun("torch_loop.py", tmp_path / "torch-odm", "--mixer", "odm")
    assert summary["mixer"] == "odm" and summary["finite"]
    check_one_mix_over_two_ranks(traces, summary)
    check_odm_decided_from_the_sums_over_ranks(traces, summary)


def test_hf_trainer_on_two_processes_trains_every_rank_on_rank_0s_odm_weights(tmp_path):
    traces, summary = torchrun("hf_trainer.py", tmp_path / "hf-odm", "--mixer", "odm")
    assert summary["mixer"] == "odm"
    check_one_mix_over_two_ranks(traces, summary)
    check_odm_decided_from_the_sums_over_ranks(traces, summary)


def test_online_acodm_in_the_hf_trainer_on_two_processes_learns_on_rank_0_only(tmp_path):
    traces, summary = torchrun("hf_trainer.py", tmp_path / "hf-online", "--mixer", "acodm-online")
    assert summary["mixer"] == "acodm-online" and summary["agent_updates"] > 0
    assert Path(summary["policy"], "policy.json").is_file()
    rank1 = json.loads((tmp_path / "hf-online" / "summary.rank1.json").read_text())
    assert "policy" not in rank1  # rank 1's agent never learned: only rank 0 exports
    check_one_mix_over_two_ranks(traces, summary)


OWN = {0: [0.7, 0.2, 0.1], 1: [0.1, 0.2, 0.7]}  # what each rank's own mixer would say


def _rank_main(rank, port, out):
    torch.set_num_threads(1)
    model = build_model(
        ModelConfig(hidden_size=32, num_layers=2, num_heads=2), 3 * SPAN, 3 * SPAN - 1, seed=0
    )
    ds = MixingDataset(
        sources(), seq_len=16, seed=0, batch_size=6, delay=0, rank=rank, world_size=2
    )
    fb = MixingFeedback(
        model, ds, total_steps=3, mixer=StaticMixer(["d0", "d1", "d2"], np.array(OWN[rank]))
    )
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    fb.connect()  # the MixingCallback's train begin
    gen, counts, own, ids = iter(ds), [], [], []
    for _ in range(2):
        batch = default_collate([next(gen) for _ in range(6)])
        fb.loss(model(input_ids=batch["input_ids"]).logits, batch).backward()
        signals = fb.step()
        counts.append(signals.counts)
        own.append(signals.extra["rank_counts"])
        ids.append(batch["input_ids"])
    dist.destroy_process_group()
    torch.save(
        {
            "history": np.stack(ds.history),
            "counts": np.stack(counts),
            "own": np.stack(own),
            "ids": torch.stack(ids),
        },
        Path(out) / f"rank{rank}.pt",
    )


def test_a_feedback_built_before_the_process_group_trains_every_rank_on_rank_0s_weights(tmp_path):
    mp.spawn(_rank_main, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    np.testing.assert_allclose(
        r0["history"], [OWN[0]] * 3, rtol=1e-12
    )  # the initial decision and both steps'
    np.testing.assert_array_equal(r1["history"], r0["history"])
    for r in (r0, r1):
        np.testing.assert_array_equal(r["counts"], r0["own"] + r1["own"])
    assert r0["own"].sum() == r1["own"].sum() == 12
    assert not torch.equal(r0["ids"], r1["ids"])  # each rank its own examples
