"""Finding copies across a class: what ties a submission to the run that made it, and
the flags for submissions that share a run (``replay``, ``shared-session``, ``same-outputs``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from ..records import cell_record, multiline_text
from .reference import student_code
from .results import Evidence, GradeResult, SimilarPair, add_flag


def run_evidence(nb: dict) -> Evidence:
    """What ties a notebook to the run that made it, for finding copies across a class.

    ``sessions`` and ``records`` (the kernel sessions its records name, a
    digest of each record) tie copies that kept their ids: a session id is
    random and a record holds its start time to the millisecond.  The rest is
    what a copier cannot cheaply make unique: ``outputs`` (per cell, keyed by
    the digest of the student's code and its occurrence, a digest of the
    digests of what the cell printed: the times, process ids, inode numbers and
    random values a run prints differ between honest runs), ``sources`` (a
    digest of the set of code that ran) and ``sequence`` (a digest of the run's
    order: which code ran with which execution count and exit status)."""
    sessions: set[str] = set()
    records: set[str] = set()
    outputs: dict[str, str] = {}
    ran: list[list] = []
    seen: dict[str, int] = {}
    for cell in nb["cells"]:
        record = cell_record(cell) if cell.get("cell_type") == "code" else None
        if not record:
            continue
        if isinstance(record.get("session"), str) and record["session"]:
            sessions.add(record["session"])
        canonical = json.dumps(record, sort_keys=True, ensure_ascii=True)
        records.add("sha256:" + hashlib.sha256(canonical.encode()).hexdigest())
        code = _short(student_code(multiline_text(cell.get("source"))))
        seen[code] = seen.get(code, 0) + 1
        printed = [str((record.get(name) or {}).get("digest") or "") for name in ("stdout", "stderr")]
        if any(printed):
            outputs[f"{code}#{seen[code]}"] = _short(" ".join(printed))
        ran.append([str(record.get("source_digest") or ""), record.get("execution_count"), record.get("exit_status")])
    return {"sessions": sorted(sessions), "records": sorted(records), "outputs": outputs,
            "sources": _short(" ".join(sorted({digest for digest, _, _ in ran}))) if ran else "",
            "sequence": _short(json.dumps(ran)) if ran else ""}


def _short(text: str) -> str:
    """A digest short enough to hold per cell, long enough that nothing collides by chance."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


SIMILAR = 0.9  # a pair at least this similar, on at least MIN_EVIDENCE cells' worth of rare values, is flagged
MIN_EVIDENCE = 2.0
RARE = 20  # values held by more submissions than this suggest no pair (a common result, not a copy)


def _evidence_items(evidence: Evidence) -> dict[str, str]:
    items = {f"out:{key}": value for key, value in (evidence.get("outputs") or {}).items()}
    for kind in ("sources", "sequence"):
        if evidence.get(kind):
            items[kind] = evidence[kind]
    return items


def similar_pairs(evidences: list[Evidence], samples: Iterable[dict[str, str]] = ()) -> list[dict]:
    """Pairs of submissions whose runs are too alike to be two honest runs.

    Compared is what differs between honest runs of the same code: a cell's
    outputs (among the submissions that ran the same code, an item is evidence
    only where they do not all agree), the set of code that ran and the order
    of the run.  Each shared value weighs more the fewer submissions hold it (1
    when only the pair does, 2/k when k do); each differing value weighs against
    as much as the rarer of the two.  ``samples``: more runs' outputs (a rerun's)
    that only tell which cells vary.  Returns ``{"pair": (i, j), "similarity",
    "outputs" (cells that vary, matched), "varying" (cells that vary, both ran),
    "sources", "sequence" (whether those match and vary)}``."""
    items = [_evidence_items(e or {}) for e in evidences]
    holders: dict[str, dict[str, int]] = {}
    for found in [*items, *({f"out:{k}": v for k, v in (s or {}).items()} for s in samples)]:
        for key, value in found.items():
            counts = holders.setdefault(key, {})
            counts[value] = counts.get(value, 0) + 1
    varying = {key for key, counts in holders.items() if len(counts) > 1}
    owners: dict[tuple[str, str], list[int]] = {}
    for i, found in enumerate(items):
        for key, value in found.items():
            if key in varying and holders[key][value] <= RARE:
                owners.setdefault((key, value), []).append(i)
    candidates = {(a, b) for group in owners.values() for n, a in enumerate(group) for b in group[n + 1:]}
    pairs = []
    for a, b in sorted(candidates):
        matched = total = 0.0
        outputs = both = 0
        for key in varying & items[a].keys() & items[b].keys():
            va, vb = items[a][key], items[b][key]
            weight = min(1.0, 2.0 / min(holders[key][va], holders[key][vb]))
            total += weight
            if va == vb:
                matched += weight
            if key.startswith("out:"):
                both += 1
                outputs += va == vb
        if total and matched / total >= SIMILAR and matched >= MIN_EVIDENCE:
            pairs.append({"pair": (a, b), "similarity": round(matched / total, 3), "outputs": outputs,
                          "varying": both,
                          **{kind: kind in varying and items[a].get(kind) == items[b].get(kind)
                             for kind in ("sources", "sequence")}})
    return pairs


def _why_similar(pair: dict) -> str:
    """One sentence: why a pair is flagged (without naming anyone)."""
    also = [what for kind, what in (("sources", "the same set of code"), ("sequence", "the same order of the run"))
            if pair[kind]]
    return (f"the outputs of {pair['outputs']} of the {pair['varying']} cells whose output differs between runs "
            "(times, process ids, inode numbers, random values) are identical"
            + (f", with {' and '.join(also)}" if also else "")
            + f" (similarity {pair['similarity']:.2f}): one run handed in twice, its ids rewritten")


def flag_shared_runs(results: list[GradeResult]) -> list[SimilarPair]:
    """Flag submissions of one class that share identical records (``replay``), a
    kernel session (``shared-session``) or the outputs of one run
    (``same-outputs``, see :func:`similar_pairs`) with others: a copy of an
    executed notebook carries the run of the student it was copied from.

    A flag's message names the others, for the instructor; ``others`` lists
    them apart, so a page for the student can leave them out.  The outputs of
    reruns (``evidence.rerun_outputs``) tell which cells vary, so that two
    copies are found even in a class of two.  Returns the pairs found, each
    with its similarity and why, for the report."""
    owners: dict[tuple[str, str], set[int]] = {}
    for i, result in enumerate(results):
        evidence = result.get("evidence") or {}
        for kind in ("records", "sessions"):
            for value in evidence.get(kind, ()):
                owners.setdefault((kind, value), set()).add(i)
    samples = [(r.get("evidence") or {}).get("rerun_outputs") or {} for r in results]
    similar = similar_pairs([r.get("evidence") or {} for r in results], samples)
    alike: dict[int, list[tuple[int, dict]]] = {}
    for pair in similar:
        a, b = pair["pair"]
        alike.setdefault(a, []).append((b, pair))
        alike.setdefault(b, []).append((a, pair))
    report: list[SimilarPair] = []
    for i, result in enumerate(results):
        evidence = result.get("evidence") or {}
        same = {kind: set().union(*(owners[(kind, v)] for v in evidence.get(kind, ()))) - {i}
                for kind in ("records", "sessions")}
        if same["records"]:
            _shared(result, "replay", same["records"], results,
                    f"has records identical to those of {_names(results, same['records'])}: "
                    "copies of one executed notebook",
                    f"has records identical to those of {_others(same['records'])}: copies of one executed notebook")
        if same["sessions"] - same["records"]:
            others = same["sessions"] - same["records"]
            _shared(result, "shared-session", others, results,
                    f"ran in the same kernel session as {_names(results, others)}: notebooks built from one run",
                    f"ran in the same kernel session as {_others(others)}: notebooks built from one run")
        outputs = [(j, pair) for j, pair in alike.get(i, []) if j not in same["records"] | same["sessions"]]
        if outputs:
            best = max(pair["similarity"] for _, pair in outputs)
            top = max(outputs, key=lambda item: item[1]["similarity"])[1]
            copied = {j for j, _ in outputs}
            _shared(result, "same-outputs", copied, results,
                    f"the same run as {_names(results, copied)}: {_why_similar(top)}",
                    f"the same run as {_others(copied)}: {_why_similar(top)}", similarity=best)
    for pair in similar:
        a, b = pair["pair"]
        why = _why_similar(pair)
        report.append({"students": [str(results[a]["student"]), str(results[b]["student"])],
                       "paths": [results[a].get("path"), results[b].get("path")],
                       "similarity": pair["similarity"], "why": why[0].upper() + why[1:] + "."})
    return report


def _shared(result: GradeResult, kind: str, others: set[int], results: list[GradeResult], message: str, for_student: str,
            **extra) -> None:
    """A flag naming other submissions: ``message`` for instructors, ``for_student`` for the student's own page."""
    add_flag(result["flags"], kind, None, message, for_student,
             others=[str(results[j]["student"]) for j in sorted(others)], **extra)


def _others(indexes: set[int]) -> str:
    """Other submissions, unnamed: what a student's own page may say of them."""
    return "another submission" if len(indexes) == 1 else f"{len(indexes)} other submissions"


def _names(results: list[GradeResult], indexes: set[int]) -> str:
    names = [str(results[j]["student"]) for j in sorted(indexes)]
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


__all__ = ["flag_shared_runs", "run_evidence", "similar_pairs"]
