"""examples/hf_trainer.py and examples/torch_loop.py end to end on the tiny corpus: static mixers,
ODM, online AC-ODM in the Hugging Face Trainer and the policy it exports served by both, DataLoader
workers, and an exactly resumed Trainer run."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMON = [
    "--config",
    str(ROOT / "configs" / "tiny.yaml"),
    "--steps",
    "6",
    "--set",
    "train.grad_accum=3",
    "--set",
    "agent.batch_size=2",
    "--set",
    "agent.warmup_fraction=0.34",
    "--set",
    "agent.warmup_updates=2",
]


def load_example(name):
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", ROOT / "examples" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def hf(tiny_prepared):
    return load_example("hf_trainer")


@pytest.fixture(scope="module")
def loop(tiny_prepared):
    return load_example("torch_loop")


def moved(summary):
    w = np.array(summary["weights"])
    return not np.allclose(w, w[0])


def test_hf_trainer_with_a_static_mixer_and_with_odm(hf, tmp_path):
    static = hf.main(COMMON + ["--mixer", "uniform", "--output", str(tmp_path / "uniform")])
    assert static["steps"] == 6 and len(static["weights"]) == 7
    np.testing.assert_allclose(static["weights"], 1 / len(static["domains"]))
    odm = hf.main(COMMON + ["--mixer", "odm", "--output", str(tmp_path / "odm")])
    assert odm["mixer"] == "odm" and moved(odm)
    assert all(np.isfinite(v) for v in odm["final_losses"].values() if v == v)
    assert (tmp_path / "odm" / "checkpoint-6" / "acodm_mixing.pt").is_file()


def test_online_acodm_in_the_hf_trainer_exports_a_policy_that_both_examples_serve(
    hf, loop, tmp_path
):
    online = hf.main(COMMON + ["--mixer", "acodm-online", "--output", str(tmp_path / "online")])
    assert online["mixer"] == "acodm-online" and moved(online) and online["agent_updates"] > 0
    scored = [s for s in online["last_scores"] if np.isfinite(s)]
    assert len(scored) >= 2 and all(
        s != 0 for s in scored
    )  # per-domain gradients reached the reward
    policy = online["policy"]
    assert Path(policy, "policy.json").is_file()
    served = hf.main(COMMON + ["--policy", policy, "--output", str(tmp_path / "served-hf")])
    plain = loop.main(COMMON + ["--policy", policy, "--output", str(tmp_path / "served-loop")])
    for run in (served, plain):
        assert run["mixer"] == "acodm" and run["steps"] == 6
        assert all(abs(sum(w) - 1) < 1e-9 for w in run["weights"])


def test_torch_loop_with_a_static_mixer_and_with_odm_on_dataloader_workers(loop, tmp_path):
    natural = loop.main(COMMON + ["--mixer", "natural", "--output", str(tmp_path / "natural")])
    w = np.array(natural["weights"])
    np.testing.assert_allclose(w, w[:1].repeat(len(w), 0))
    assert not np.allclose(w[0], 1 / w.shape[1])  # the corpus's proportions, not uniform
    odm = loop.main(
        COMMON + ["--mixer", "odm", "--workers", "2", "--output", str(tmp_path / "odm")]
    )
    assert odm["finite"] and moved(odm)


def test_a_resumed_hf_trainer_run_continues_exactly(hf, tmp_path):
    out = tmp_path / "run"
    # GPT-NeoX checkpoints do not reload in transformers 5.24 Trainer resume (its lm_head is saved as
    # embed_out and left out on load), so this run is a Llama of the same size
    args = COMMON + [
        "--mixer",
        "alignment",
        "--save-every",
        "3",
        "--output",
        str(out),  # moves from step 1
        "--set",
        "model.model_type=llama",
    ]
    straight = hf.main(args)
    shutil.rmtree(out / "checkpoint-6")  # as if the run had died after step 3's checkpoint
    resumed = hf.main(args + ["--resume"])
    assert resumed["weights"] == straight["weights"] and moved(straight)
    np.testing.assert_allclose(
        list(resumed["final_losses"].values()), list(straight["final_losses"].values()), rtol=1e-6
    )


def test_the_trainer_must_keep_the_domain_field(tmp_path):
    from transformers import Trainer, TrainingArguments, default_data_collator

    from acodm_ray.anyloop import MixingDataset, MixingFeedback, trainer_kwargs
    from acodm_ray.config import ModelConfig
    from acodm_ray.model import build_model

    model = build_model(ModelConfig(hidden_size=16, num_layers=2, num_heads=2), 64, 63, seed=0)
    ds = MixingDataset({"a": np.arange(64) % 63, "b": np.arange(64)[::-1] % 63}, seq_len=8)
    fb = MixingFeedback(model, ds, total_steps=2, mixer="uniform")
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        report_to=[],
        use_cpu=True,
        per_device_train_batch_size=2,
    )  # remove_unused_columns defaults to True
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=ds,
        data_collator=default_data_collator,
        **trainer_kwargs(fb),
    )
    with pytest.raises(ValueError, match="remove_unused_columns=False"):
        trainer.train()


@pytest.mark.slow  # two training jobs in subprocesses
def test_the_examples_run_as_scripts(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for script in ("torch_loop.py", "hf_trainer.py"):
        out = tmp_path / script
        proc = subprocess.run(
            [
                sys.executable,
                str(ROOT / "examples" / script),
                *COMMON,
                "--steps",
                "2",
                "--mixer",
                "odm",
                "--output",
                str(out),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads((out / "summary.json").read_text())["steps"] == 2
