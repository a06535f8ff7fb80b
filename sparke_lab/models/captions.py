"""Caption grammar and prompt sets of the digits mini-SD model.

Each digit is named several ways (word, numeral, phrasing) so that semantically similar
prompts exist ("a handwritten three", "the digit 3"), and broad captions name several valid
digits ("an odd digit", "a digit less than five", "a handwritten digit"). Every prompt has a
tuple of valid digits and a *cluster* id: prompts that mean the same thing share a cluster
(all names of the digit 3 are cluster 3; all phrasings of "odd" are cluster 10, ...).

The grammar is published as ``sparke_lab/data/prompts/grammar.json`` and the prompt sets as
``sparke_lab/data/prompts/prompts.csv`` (both written by :func:`write_prompt_files`).

Used in notebook 08_guided_generation_digits (prompt sets) and by ``sparke-lab train digits``.
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._common import PathLike, data_dir, train_dir

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

#: Templates naming one digit: ``{word}`` is the English word, ``{num}`` the numeral.
SINGLE_TEMPLATES = (
    "a handwritten {word}",
    "the digit {num}",
    "the number {word}",
    "a {word}",
    "digit {num}",
    "a drawing of the number {num}",
)

#: Broad captions: cluster name -> (cluster id, valid digits, phrasings).
BROAD_CLUSTERS: Dict[str, Tuple[int, Tuple[int, ...], Tuple[str, ...]]] = {
    "odd": (10, (1, 3, 5, 7, 9), ("an odd digit", "an odd number", "a handwritten odd digit")),
    "even": (11, (0, 2, 4, 6, 8), ("an even digit", "an even number", "a handwritten even digit")),
    "small": (12, (0, 1, 2, 3, 4), ("a digit less than five", "a number smaller than 5",
                                    "a small digit")),
    "large": (13, (5, 6, 7, 8, 9), ("a digit greater than four", "a number bigger than 4",
                                    "a large digit")),
    "any": (14, tuple(range(10)), ("a handwritten digit", "any digit", "a number")),
}

#: The designed class distribution of each broad cluster's training captions: digit -> weight,
#: listed from the dominant digit down. A broad caption is drawn first and its digit second,
#: from these weights, so P(digit | caption) is exactly this distribution in training. Skewed
#: on purpose: CFG at scale w samples roughly p(x|c) p(c|x)^(w-1), which favours the dominant
#: digit more as w grows (the collapse diversity guidance has to undo); a flat distribution
#: would give CFG nothing to prefer (design note in sparke_lab/data/README.md). Each cluster has its own
#: order; the weights of the five-digit clusters are .45/.25/.15/.10/.05.
BROAD_CLASS_WEIGHTS: Dict[str, Tuple[Tuple[int, float], ...]] = {
    "odd": ((1, .45), (7, .25), (3, .15), (9, .10), (5, .05)),
    "even": ((8, .45), (0, .25), (6, .15), (2, .10), (4, .05)),
    "small": ((2, .45), (4, .25), (0, .15), (3, .10), (1, .05)),
    "large": ((6, .45), (9, .25), (5, .15), (8, .10), (7, .05)),
    "any": ((4, .30), (9, .20), (0, .14), (5, .10), (3, .08), (7, .06), (1, .045), (8, .035),
            (6, .025), (2, .015)),
}

#: The unconditional ("null") caption used for classifier-free guidance dropout.
NULL_CAPTION = ""

#: Named prompt sets served by :func:`load_prompt_set`.
PROMPT_SETS = ("single", "broad", "all", "mini")


@dataclass(frozen=True)
class Prompt:
    """One prompt of a prompt set.

    ``prompt`` is the text, ``valid_digits`` the digits an image may show to follow it,
    ``cluster`` an int id shared by prompts with the same meaning (0-9: one digit,
    10 odd, 11 even, 12 small, 13 large, 14 any), ``cluster_name`` its name, ``kind``
    ``"single"`` or ``"broad"``, and ``class_weights`` the class distribution of the
    prompt's training captions, aligned with ``valid_digits`` (sums to 1; ``(1.0,)`` for a
    single digit; empty when unknown, e.g. a custom prompt).
    """

    prompt: str
    valid_digits: Tuple[int, ...]
    cluster: int
    cluster_name: str
    kind: str
    class_weights: Tuple[float, ...] = ()

    def as_dict(self) -> dict:
        """The prompt as a plain dict (``valid_digits`` stays a tuple)."""
        return asdict(self)

    def class_distribution(self) -> np.ndarray:
        """The training-caption class distribution as a length-10 vector over digits 0-9.

        Used by the class-distribution metrics (TV to the caption distribution); raises
        ValueError for a prompt whose distribution is unknown.
        """
        if len(self.class_weights) != len(self.valid_digits) or not self.class_weights:
            raise ValueError(f"prompt {self.prompt!r} has no class distribution (class_weights "
                             f"{self.class_weights}, valid digits {self.valid_digits})")
        q = np.zeros(10)
        q[list(self.valid_digits)] = self.class_weights
        return q


def single_prompts() -> List[Prompt]:
    """All single-digit prompts, digit-major (10 digits x len(SINGLE_TEMPLATES))."""
    out = []
    for d, word in enumerate(DIGIT_WORDS):
        for tpl in SINGLE_TEMPLATES:
            out.append(Prompt(tpl.format(word=word, num=d), (d,), d, f"digit-{d}", "single",
                              (1.0,)))
    return out


def broad_prompts() -> List[Prompt]:
    """All broad prompts (several valid digits each), cluster-major."""
    out = []
    for name, (cid, valid, phrasings) in BROAD_CLUSTERS.items():
        w = dict(BROAD_CLASS_WEIGHTS[name])
        for text in phrasings:
            out.append(Prompt(text, tuple(valid), cid, name, "broad",
                              tuple(w[d] for d in valid)))
    return out


def all_prompts() -> List[Prompt]:
    """Single-digit prompts followed by broad prompts."""
    return single_prompts() + broad_prompts()


def _mini_prompts() -> List[Prompt]:
    singles = [p for p in single_prompts() if p.prompt.startswith("a handwritten ")]
    broad = [p for p in broad_prompts() if p.prompt in
             ("an odd digit", "an even digit", "a digit less than five", "a handwritten digit")]
    return singles + broad


def caption_vocabulary() -> List[str]:
    """Every word (and numeral) that appears in a caption, sorted."""
    words = set()
    for p in all_prompts():
        words.update(p.prompt.split())
    return sorted(words)


def grammar() -> dict:
    """The caption grammar as a JSON-able dict (written to ``prompts/grammar.json``)."""
    return {
        "digit_words": list(DIGIT_WORDS),
        "single_templates": list(SINGLE_TEMPLATES),
        "broad_clusters": {k: {"cluster": v[0], "valid_digits": list(v[1]),
                               "phrasings": list(v[2])} for k, v in BROAD_CLUSTERS.items()},
        "null_caption": NULL_CAPTION,
        "cluster_ids": "0-9: the named digit; " + ", ".join(
            f"{v[0]}: {k}" for k, v in BROAD_CLUSTERS.items()),
        "training_mixture": {"null": 0.1, "broad": 0.3, "single": 0.6},
        "broad_class_weights": {k: {str(d): w for d, w in v}
                                for k, v in BROAD_CLASS_WEIGHTS.items()},
        "broad_sampling": "caption first (cluster uniform, phrasing uniform), then the digit "
                          "from broad_class_weights, then a training image of that digit",
        "vocabulary": caption_vocabulary(),
    }


def _sets_of(p: Prompt) -> List[str]:
    sets = [p.kind, "all"]
    if p in _mini_prompts():
        sets.append("mini")
    return sets


def write_prompt_files(out_dir: Optional[PathLike] = None) -> Path:
    """Write ``grammar.json`` and ``prompts.csv`` to ``out_dir`` (default
    ``<user data folder>/prompts``, see :func:`sparke_lab.models._common.train_dir`; the shipped
    copy is ``sparke_lab/data/prompts``).

    CSV columns: prompt, valid_digits (space separated), cluster, cluster_name, kind, sets,
    class_weights (space separated, aligned with valid_digits: the class distribution of the
    prompt's training captions).
    """
    out = train_dir("prompts", out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "grammar.json").write_text(json.dumps(grammar(), indent=2) + "\n")
    with open(out / "prompts.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "valid_digits", "cluster", "cluster_name", "kind", "sets",
                    "class_weights"])
        for p in all_prompts():
            w.writerow([p.prompt, " ".join(map(str, p.valid_digits)), p.cluster,
                        p.cluster_name, p.kind, " ".join(_sets_of(p)),
                        " ".join(f"{x:g}" for x in p.class_weights)])
    return out


def load_prompt_set(name: str = "all", path: Optional[PathLike] = None) -> List[Prompt]:
    """Load a named prompt set: ``"single"``, ``"broad"``, ``"all"`` or ``"mini"``.

    Reads ``prompts/prompts.csv`` of :func:`data_dir` (or ``path``) and returns a list of :class:`Prompt`
    (fields ``prompt``, ``valid_digits``, ``cluster``, ``cluster_name``, ``kind``,
    ``class_weights``: each broad prompt's designed class distribution, see
    :data:`BROAD_CLASS_WEIGHTS` and :meth:`Prompt.class_distribution`); when the file is
    absent the same list is built from the grammar in this module.
    ``"mini"`` is one phrasing per digit plus four broad prompts (14 prompts) for quick runs.
    Used in notebook 08_guided_generation_digits.
    """
    if name not in PROMPT_SETS:
        raise ValueError(f"unknown prompt set {name!r}; choose one of {PROMPT_SETS}")
    csv_path = Path(path) if path is not None else data_dir() / "prompts" / "prompts.csv"
    if not csv_path.is_file():
        if path is not None:
            raise FileNotFoundError(f"prompt file {csv_path} not found; write it with "
                                    "sparke_lab.models.captions.write_prompt_files()")
        return {"single": single_prompts, "broad": broad_prompts, "all": all_prompts,
                "mini": _mini_prompts}[name]()
    out = []
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            if name in row["sets"].split():
                out.append(Prompt(row["prompt"], tuple(int(v) for v in row["valid_digits"].split()),
                                  int(row["cluster"]), row["cluster_name"], row["kind"],
                                  tuple(float(v) for v in (row.get("class_weights") or "").split())))
    return out


def training_captions() -> Tuple[List[str], np.ndarray]:
    """The finite caption list used in training and a (n_captions, 10) validity matrix.

    Row ``i`` has ones on the digits that caption ``i`` allows. Caption 0 is the null caption
    (all digits valid). Used by ``sparke-lab train digits``.
    """
    prompts = all_prompts()
    caps = [NULL_CAPTION] + [p.prompt for p in prompts]
    valid = np.zeros((len(caps), 10), dtype=np.float32)
    valid[0] = 1.0
    for i, p in enumerate(prompts, start=1):
        valid[i, list(p.valid_digits)] = 1.0
    return caps, valid


def sample_training_pairs(digit_pool: Sequence[np.ndarray], batch_size: int,
                          rng: np.random.Generator, p_null: float = 0.1, p_broad: float = 0.3
                          ) -> Tuple[np.ndarray, np.ndarray]:
    """Draw ``batch_size`` (image index, caption index) training pairs.

    ``digit_pool[d]`` holds the indices of the training images of digit ``d``. With
    probability ``p_null`` a uniformly drawn image gets the null caption; with ``p_broad`` a
    broad cluster is drawn uniformly, then one of its phrasings, then a digit from the
    cluster's :data:`BROAD_CLASS_WEIGHTS`, then an image of that digit (so P(digit | broad
    caption) is exactly the designed skew); otherwise a uniformly drawn image gets a
    single-digit caption naming it (uniform over phrasings). Caption indices index
    :func:`training_captions`. Used by ``sparke-lab train digits``.
    """
    caps, _ = training_captions()
    n_single = len(SINGLE_TEMPLATES)
    row_of = {c: i for i, c in enumerate(caps)}
    labels = np.concatenate([np.full(len(ix), d) for d, ix in enumerate(digit_pool)])
    images = np.concatenate(list(digit_pool))
    names = list(BROAD_CLUSTERS)
    img = np.empty(batch_size, dtype=np.int64)
    cap = np.empty(batch_size, dtype=np.int64)
    u = rng.random(batch_size)
    for k in range(batch_size):
        if u[k] < p_null + (1 - p_null - p_broad):  # null or single: the image comes first
            j = rng.integers(len(images))
            img[k] = images[j]
            d = int(labels[j])
            cap[k] = 0 if u[k] < p_null else 1 + d * n_single + rng.integers(n_single)
        else:
            name = names[rng.integers(len(names))]
            phrasings = BROAD_CLUSTERS[name][2]
            cap[k] = row_of[phrasings[rng.integers(len(phrasings))]]
            digits, weights = zip(*BROAD_CLASS_WEIGHTS[name])
            d = digits[rng.choice(len(digits), p=np.asarray(weights) / np.sum(weights))]
            img[k] = digit_pool[d][rng.integers(len(digit_pool[d]))]
    return img, cap
