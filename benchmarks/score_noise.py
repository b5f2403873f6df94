"""How a domain's alignment score responds to its own weight: the bench proxy under random mixes.

Runs the proxy stage's env (configs/bench.yaml's proxy, seed 100: not a reported seed) for
`--episodes` episodes with weights drawn from Dirichlet(3, ..., 3) each step, records every step's
weights, micro-batch counts and per-domain scores (`signals.score`), and fits per domain, over
steps after the first 20,

    s_i = a + b * w_i + c * log(step)      and      s_i = a' + b' / n_i + c' * log(step)

where n_i is the number of micro-batches domain i got. A score that measured only how much the
domain's gradient helps would not depend on n_i; the self term <g_i, g_i> of the `total` score
carries the micro-batch noise tr Cov / n_i (docs/method.md), so b' > 0 and b < 0 for it.

    python benchmarks/score_noise.py --score total      # and --score cross
    python benchmarks/score_noise.py --score eval --window 8 --set corpus.path=debian-v1-swamped \
        --set train.grad_accum=14 --set 'train.eval_domains=[python_code,...]'   # a derived setting

Besides the fits it reports, per domain, the mean score in each quarter of the episodes (does a
domain's score change as training goes on) and the standard error of a domain's mean score over a
window of `--window` consecutive steps, sd_w / sqrt(1) over the windows' means: how much averaging
over a window (signals.score_window) takes off the noise a single step's score carries.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def record(score: str, seed: int, episodes: int, sets: list[str] | None = None) -> dict:
    from tqdm import tqdm

    from acodm_ray.compare import proxy_config
    from acodm_ray.config import load_config
    from envs.data_mixing_env import DataMixingEnv

    cfg = proxy_config(
        load_config(ROOT / "configs/bench.yaml", [f"signals.score={score}", *(sets or [])]),
        seed,
        "acodm",
    )
    env = DataMixingEnv({"experiment": cfg})
    rng = np.random.default_rng(seed)
    rows = []
    with tqdm(total=episodes * env.max_decisions, desc=f"proxy steps ({score} score)") as bar:
        for ep in range(episodes):
            env.reset(seed=seed + ep)
            done = False
            while not done:
                w = rng.dirichlet(np.full(len(env.domains), 3.0)).astype(np.float32)
                _, _, term, trunc, info = env.step(w)
                rows.append(
                    {
                        "step": int(info["step"]),
                        "w": info["weights"].tolist(),
                        "counts": info["counts"].tolist(),
                        "scores": info["scores"].tolist(),
                        "scored": info["scored"].tolist(),
                    }
                )
                done = term or trunc
                bar.update()
    return {"domains": env.domains, "micro_batch_size": cfg.train.micro_batch_size, "rows": rows}


def window_sd(scores: np.ndarray, window: int) -> float:
    """sd over consecutive non-overlapping windows of `window` steps of the window's mean score
    (NaN steps skipped): the noise left in a score averaged over `window` steps."""
    n = len(scores) // window
    means = [np.nanmean(scores[k * window : (k + 1) * window]) for k in range(n)]
    return float(np.nanstd(means)) if n > 1 else float("nan")


def fit(data: dict, skip: int = 20, window: int = 8) -> list[dict]:
    rows = [r for r in data["rows"] if r["step"] > skip]
    W, S = np.array([r["w"] for r in rows]), np.array([r["scores"] for r in rows])
    n = np.array([r["counts"] for r in rows]) / data["micro_batch_size"]
    log_step = np.log([r["step"] for r in rows])
    steps = np.array([r["step"] for r in rows])
    quarter = np.minimum(4 * (steps - 1) // max(int(steps.max()), 1), 3)
    out = []
    for i, name in enumerate(data["domains"]):
        ones = np.ones(len(rows))
        b_w = np.linalg.lstsq(np.column_stack([ones, W[:, i], log_step]), S[:, i], rcond=None)[0][1]
        b_n = np.linalg.lstsq(
            np.column_stack([ones, 1.0 / n[:, i], log_step]), S[:, i], rcond=None
        )[0][1]
        out.append(
            {
                "domain": name,
                "mean_score": float(S[:, i].mean()),
                "score_sd": float(S[:, i].std()),
                "slope_own_weight": float(b_w),
                "slope_inverse_micro_batches": float(b_n),
                "mean_score_by_quarter": [float(np.nanmean(S[quarter == q, i])) for q in range(4)],
                f"sd_of_{window}_step_means": window_sd(S[:, i], window),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--score", default="total", choices=["total", "cross", "eval"])
    parser.add_argument("--window", type=int, default=8, help="steps per window of the window sd")
    parser.add_argument(
        "--set", action="append", default=[], dest="sets", help="config override (repeatable)"
    )
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument(
        "--out", default=None, help="default benchmarks/results/score_noise_<score>.json"
    )
    args = parser.parse_args()
    data = record(args.score, args.seed, args.episodes, args.sets)
    result = {
        "score": args.score,
        "sets": args.sets,
        "seed": args.seed,
        "episodes": args.episodes,
        "fits": fit(data, window=args.window),
        **data,
    }
    out = Path(args.out or ROOT / f"benchmarks/results/score_noise_{args.score}.json")
    out.write_text(json.dumps(result))
    print(
        f"{'domain':12s} {'mean score':>10s} {'sd':>6s} {'sd of ' + str(args.window) + '-step means':>18s} "
        f"{'d s / d w_i':>12s} {'d s / d (1/n_i)':>16s}  mean by quarter"
    )
    for f in result["fits"]:
        quarters = " ".join(f"{q:6.3f}" for q in f["mean_score_by_quarter"])
        print(
            f"{f['domain']:12s} {f['mean_score']:10.3f} {f['score_sd']:6.3f} "
            f"{f[f'sd_of_{args.window}_step_means']:18.3f} {f['slope_own_weight']:+12.3f} "
            f"{f['slope_inverse_micro_batches']:+16.3f}  {quarters}"
        )


if __name__ == "__main__":
    main()
