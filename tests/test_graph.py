"""The graph module: cycles, waves, order and critical path, at any size."""

import pytest

from orchestra import graph


def test_find_cycle_names_the_cycle_in_dependency_order():
    dependencies = {"a": ["b"], "b": ["c"], "c": ["a"], "d": []}
    assert graph.find_cycle(dependencies) == ["a", "b", "c", "a"]


def test_find_cycle_finds_a_cycle_reached_through_other_tasks():
    dependencies = {"z": [], "x": ["y"], "y": ["w"], "w": ["y"]}
    assert graph.find_cycle(dependencies) == ["y", "w", "y"]


def test_no_cycle_when_tasks_are_listed_before_their_dependencies():
    dependencies = {"d": ["c"], "c": ["b", "a"], "b": ["a"], "a": []}
    assert graph.find_cycle(dependencies) is None
    assert graph.waves(dependencies) == [["a"], ["b"], ["c"], ["d"]]


def test_waves_group_independent_tasks_in_file_order():
    dependencies = {
        "lint": [],
        "models": [],
        "api": ["models"],
        "ui": ["models"],
        "e2e": ["api", "ui"],
    }
    assert graph.waves(dependencies) == [["lint", "models"], ["api", "ui"], ["e2e"]]
    assert graph.topological_order(dependencies) == ["lint", "models", "api", "ui", "e2e"]


def test_waves_refuse_a_cycle():
    with pytest.raises(ValueError, match="a -> b -> a"):
        graph.waves({"a": ["b"], "b": ["a"]})


def test_critical_path_follows_the_heaviest_chain():
    dependencies = {"a": [], "b": ["a"], "c": [], "d": ["b", "c"]}
    assert graph.critical_path(dependencies) == (3.0, ["a", "b", "d"])
    weights = {"c": 10.0}
    assert graph.critical_path(dependencies, weights) == (11.0, ["c", "d"])
    assert graph.remaining_path_lengths(dependencies) == {"a": 3.0, "b": 2.0, "c": 2.0, "d": 1.0}


def test_duplicate_dependencies_count_once():
    dependencies = {"a": [], "b": ["a", "a"]}
    assert graph.edge_count(dependencies) == 1
    assert graph.waves(dependencies) == [["a"], ["b"]]


@pytest.mark.parametrize("listed_backwards", [False, True])
def test_a_100000_task_chain_does_not_hit_the_recursion_limit(listed_backwards):
    count = 100_000
    names = [f"t{i}" for i in range(count)]
    pairs = [(names[i], [names[i - 1]] if i else []) for i in range(count)]
    if listed_backwards:  # forces the general algorithms, not the in-order fast path
        pairs.reverse()
    chain = dict(pairs)
    assert graph.find_cycle(chain) is None
    assert len(graph.waves(chain)) == count
    length, path = graph.critical_path(chain)
    assert length == count and path[0] == "t0" and path[-1] == names[-1]
    chain["t0"] = [names[-1]]
    cycle = graph.find_cycle(chain)
    assert cycle is not None and len(cycle) == count + 1 and cycle[0] == cycle[-1]
