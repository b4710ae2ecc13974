"""Learning rule weights from past outcomes, as a proposal people review.

Each lead in the outcomes file becomes one example: a 0/1 feature per fit rule (does it
match?) and, per engagement rule, the decayed, capped number of events the rule counted in
the lookback before the outcome, so that the model's score is exactly Σ points × feature.
An L2-regularised logistic regression (scikit-learn) learns how much each feature moves
the odds of converting. Its weights are rescaled into points on the current file's scale:
fit points keep their total (grades keep meaning), engagement points keep the average
converting lead's engagement (hot thresholds keep meaning). Rules the data gives no
positive weight get 0 points. The result is a revised scoring file and a diff; the live
file is never changed.

Expected precision and recall of the hot rule, before and after, are measured on a held-out
quarter of the examples (stratified, seeded) when there are enough of them, else in-sample
(and said so).
"""

from __future__ import annotations

import csv
import difflib
import re
from collections import defaultdict
from collections.abc import Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from nurture.analytics.history import History, LeadHistory, chunks, score_at
from nurture.errors import Diagnostic, NurtureError, ValidationFailed
from nurture.scenario.yamlsource import LineDict, LineList, parse_yaml
from nurture.scoring.engine import CompiledScoring, ScoreResult
from nurture.scoring.loader import check_scoring_data
from nurture.store.reports import HistoryScope

TRUE = {"1", "true", "yes", "y", "converted", "won"}
FALSE = {"0", "false", "no", "n", "lost", ""}
MIN_HOLDOUT_POSITIVES = 8
POINTS = re.compile(r"(\bpoints:\s*)-?\d+")


@dataclass(frozen=True)
class Outcome:
    email: str
    converted: bool
    at: datetime | None
    line: int


@dataclass(frozen=True)
class Quality:
    hot: int
    precision: float | None
    recall: float | None


@dataclass
class Proposal:
    weights: dict[str, float]  # learned log-odds per unit of each feature
    points: dict[str, tuple[int, int]]  # rule → (current points, proposed points)
    text: str  # the revised scoring file
    diff: str
    before: Quality
    after: Quality
    examples: int
    positives: int
    held_out: bool
    unknown: list[str]  # emails in the outcomes file with no lead


def read_outcomes(path: Path) -> list[Outcome]:
    """`email,converted[,at]` rows; every bad row is reported with its line, and nothing is used."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise NurtureError(f"{path}: cannot read: {exc}") from exc
    reader = csv.DictReader(text.splitlines())
    columns = {c.strip().lower() for c in reader.fieldnames or []}
    if not {"email", "converted"} <= columns:
        raise NurtureError(f"{path}:1: an outcomes file needs the columns email and converted (and optionally at)")
    outcomes: list[Outcome] = []
    problems: list[Diagnostic] = []
    for row in reader:
        line = reader.line_num
        values = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        email, flag = values.get("email", "").lower(), values.get("converted", "").lower()
        if "@" not in email:
            problems.append(Diagnostic(str(path), line, f"not an email address: {email!r}"))
            continue
        if flag not in TRUE | FALSE:
            problems.append(Diagnostic(str(path), line, f"converted must be yes/no, true/false or 1/0, not {flag!r}"))
            continue
        at = None
        if values.get("at"):
            try:
                at = datetime.fromisoformat(values["at"].replace("Z", "+00:00"))
            except ValueError:
                problems.append(Diagnostic(str(path), line, f"at is not an ISO 8601 date or instant: {values['at']!r}"))
                continue
            if at.tzinfo is None:
                problems.append(Diagnostic(str(path), line, "at needs a time zone offset (e.g. 2026-03-01T00:00:00Z)"))
                continue
        outcomes.append(Outcome(email, flag in TRUE, at, line))
    if problems:
        raise ValidationFailed(problems)
    if not outcomes:
        raise NurtureError(f"{path}: no outcomes")
    return outcomes


def features(scoring: CompiledScoring, history: History, lead: LeadHistory, at: datetime) -> dict[str, float]:
    """Fit rules as 0/1; engagement rules as decayed, capped event counts (points ÷ rule points)."""
    return _features(scoring, score_at(scoring, lead, at, history.colleague_events(lead)))


def _features(scoring: CompiledScoring, result: ScoreResult) -> dict[str, float]:
    found: dict[str, float] = {rule.name: 0.0 for rule in scoring.model.fit}
    found.update({rule.name: 0.0 for rule in scoring.model.engagement})
    per_rule = {rule.name: rule.points for rule in scoring.model.engagement}
    for c in result.contributions:
        if c.kind == "fit":
            found[c.rule] = 1.0
        elif c.kind == "engagement" and per_rule.get(c.rule):
            found[c.rule] = c.points / per_rule[c.rule]
    return found


def scope(outcomes: Sequence[Outcome]) -> HistoryScope:
    """The leads `learn` looks at (those in the outcomes), for reading only those."""
    return HistoryScope(emails=frozenset(o.email for o in outcomes))


def _replay(
    scoring: CompiledScoring,
    history: History | Iterable[History],
    outcomes: Sequence[Outcome],
    wanted: Container[int],
    now: datetime,
) -> Iterator[tuple[int, ScoreResult | None]]:
    """(index in `outcomes`, the lead's score when its outcome was known) for each wanted
    outcome whose lead is in the history; None for the score when an outcome is dated before
    the events its score needs were pruned (it cannot be replayed)."""
    indexes: dict[str, list[int]] = defaultdict(list)
    for index, outcome in enumerate(outcomes):
        if index in wanted:
            indexes[outcome.email].append(index)
    for chunk in chunks(history):
        for lead in chunk.leads.values():
            colleagues = None
            for index in indexes.get(lead.email, ()):
                at = outcomes[index].at or now
                if not chunk.replayable(at):
                    yield index, None
                    continue
                if colleagues is None:
                    colleagues = chunk.colleague_events(lead)
                yield index, score_at(scoring, lead, at, colleagues)


def learn(
    scoring: CompiledScoring,
    scoring_text: str,
    scoring_path: str,
    history: History | Iterable[History],
    outcomes: Sequence[Outcome],
    now: datetime,
) -> Proposal:
    """Reads the history twice (a `StoredHistory` streams it again): once for every
    example's features and score, once more for the held-out examples' score under the
    proposal."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    known: set[int] = set()
    found: dict[int, dict[str, float]] = {}
    hot_before: dict[int, bool] = {}
    for n, result in _replay(scoring, history, outcomes, range(len(outcomes)), now):
        known.add(n)
        if result is not None:
            found[n] = _features(scoring, result)
            hot_before[n] = result.hot
    unknown = [o.email for n, o in enumerate(outcomes) if n not in known]
    examples = [n for n in range(len(outcomes)) if n in found]
    labels = np.array([outcomes[i].converted for i in examples], dtype=int)
    if len(set(labels.tolist())) < 2:
        raise NurtureError("the outcomes need both converted and not converted leads to learn from")
    names = [r.name for r in scoring.model.fit] + [r.name for r in scoring.model.engagement]
    x = np.array([[found[i][n] for n in names] for i in examples], dtype=float)
    del found

    positives = int(labels.sum())
    held_out = positives >= MIN_HOLDOUT_POSITIVES and len(labels) - positives >= MIN_HOLDOUT_POSITIVES
    index = np.arange(len(labels))
    train, test = (
        train_test_split(index, test_size=0.25, random_state=0, stratify=labels) if held_out else (index, index)
    )
    scaler = StandardScaler().fit(x[train])
    model = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(x[train]), labels[train])
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    weights = dict(zip(names, (model.coef_[0] / scale).tolist(), strict=True))

    proposed = _points(scoring, weights, x[train], labels[train], names)
    text = rewrite_points(scoring_text, scoring_path, {name: new for name, (_, new) in proposed.items()})
    revised = _compile(text, scoring_path)
    diff = "".join(
        difflib.unified_diff(
            scoring_text.splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=scoring_path,
            tofile=f"{scoring_path} (proposed)",
        )
    )
    tested = [examples[i] for i in test]
    hot_after = {n: result.hot for n, result in _replay(revised, history, outcomes, set(tested), now) if result}
    return Proposal(
        weights=weights,
        points=proposed,
        text=text,
        diff=diff,
        before=_quality([(hot_before[i], outcomes[i].converted) for i in tested]),
        after=_quality([(hot_after[i], outcomes[i].converted) for i in tested]),
        examples=len(examples),
        positives=positives,
        held_out=held_out,
        unknown=unknown,
    )


def _points(
    scoring: CompiledScoring, weights: dict[str, float], x: object, y: object, names: list[str]
) -> dict[str, tuple[int, int]]:
    import numpy as np

    xs, ys = np.asarray(x), np.asarray(y)
    result: dict[str, tuple[int, int]] = {}
    fit = scoring.model.fit
    learned = {r.name: max(weights[r.name], 0.0) for r in fit}
    budget = sum(abs(r.points) for r in fit)
    total = sum(learned.values())
    for r in fit:
        result[r.name] = (r.points, round(learned[r.name] / total * budget) if total else 0)
    engagement = scoring.model.engagement
    converting = xs[ys == 1].mean(axis=0) if (ys == 1).any() else xs.mean(axis=0)
    mean = {name: float(converting[i]) for i, name in enumerate(names)}
    learned = {e.name: max(weights[e.name], 0.0) for e in engagement}
    current_level = sum(e.points * mean[e.name] for e in engagement)
    learned_level = sum(learned[e.name] * mean[e.name] for e in engagement)
    factor = current_level / learned_level if learned_level > 0 else 0.0
    for rule in engagement:
        result[rule.name] = (rule.points, round(learned[rule.name] * factor))
    return result


def rewrite_points(text: str, path: str, points: dict[str, int]) -> str:
    """`text` with each named rule's `points:` set anew; comments and layout are kept."""
    data, problems = parse_yaml(text, path)
    if problems or not isinstance(data, LineDict) or not isinstance(data.get("scoring"), LineDict):
        raise NurtureError(f"{path}: not a scoring file")
    lines = text.splitlines(keepends=True)
    for section in ("fit", "engagement"):
        items = data["scoring"].get(section)
        if not isinstance(items, LineList):
            continue
        starts = [*items.item_lines, len(lines) + 1]
        for index, item in enumerate(items):
            name = item.get("name") if isinstance(item, dict) else None
            if name not in points:
                continue
            replacement = rf"\g<1>{points[name]}"
            for number in range(starts[index] - 1, starts[index + 1] - 1):
                changed = POINTS.sub(replacement, lines[number], count=1)
                if changed != lines[number]:
                    lines[number] = changed
                    break
    return "".join(lines)


def _compile(text: str, path: str) -> CompiledScoring:
    data, problems = parse_yaml(text, path)
    if problems or not isinstance(data, LineDict):
        raise ValidationFailed(problems)
    compiled, problems = check_scoring_data(data, path)
    if compiled is None:
        raise ValidationFailed(problems)
    return compiled


def _quality(examples: Sequence[tuple[bool, bool]]) -> Quality:
    """Precision and recall of the hot rule over (hot, converted) examples."""
    hot = good = converting = 0
    for is_hot, converted in examples:
        hot += is_hot
        good += is_hot and converted
        converting += converted
    return Quality(hot, good / hot if hot else None, good / converting if converting else None)
