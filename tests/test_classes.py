"""orchestra.classes: attrs' decorators with one shared __repr__ that prints what attrs' would."""

from __future__ import annotations

import attrs
import pytest

from orchestra import classes
from orchestra.models import Backoff, ExecutorRun, Task


def make_pair(decorator_ours, decorator_attrs):
    """The same class made twice: by orchestra's decorator and by attrs' own."""

    def body():
        class Point:
            x: int
            label: str = "origin"
            secret: str = attrs.field(default="hunter2", repr=False)
            shown: tuple = attrs.field(default=(1, 2), repr=lambda value: f"<{len(value)}>")
            nested: object = None

        return Point

    return decorator_ours(body()), decorator_attrs(body())


@pytest.mark.parametrize(
    ("ours", "theirs"), [(classes.frozen, attrs.frozen), (classes.define, attrs.define)]
)
def test_repr_is_attrs_own(ours, theirs):
    mine, reference = make_pair(ours, theirs)
    inner = Backoff(initial=1.0)
    for arguments in ({"x": 1}, {"x": 2, "label": "a'b", "nested": inner}):
        assert repr(mine(**arguments)) == repr(reference(**arguments))
    assert "hunter2" not in repr(mine(x=1))  # a field declared repr=False stays out


def test_the_rest_is_attrs():
    Frozen, _ = make_pair(classes.frozen, attrs.frozen)
    one, same, other = Frozen(1), Frozen(1), Frozen(2)
    assert one == same and hash(one) == hash(same) and one != other
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        one.x = 3
    assert attrs.has(Frozen) and not hasattr(one, "__dict__")  # slotted
    Mutable, _ = make_pair(classes.define, attrs.define)
    point = Mutable(1)
    point.x = 5
    assert point.x == 5


def test_a_class_keeps_its_own_repr():
    @classes.frozen
    class Named:
        name: str

        def __repr__(self) -> str:
            return f"<{self.name}>"

    assert repr(Named("a")) == "<a>"


def test_orchestras_models_print_their_fields():
    task = Task(id="build", command=("make",))
    assert repr(task).startswith("Task(id='build', title=None, prompt=None, command=('make',),")
    run = ExecutorRun(run_id="r", parallel=2, work=print, event=print)
    assert "work=" not in repr(run)  # declared repr=False
