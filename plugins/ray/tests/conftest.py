"""A real Ray cluster on this machine for the tests: a head and one more node, each
advertising its own tools, on 127.0.0.1.

Ray turns a loopback address into the machine's network address unless it is told that
clusters are local only (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, what Ray does on macOS);
the variable is set for the nodes and for every orchestra process the tests start.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

import attrs
import pytest

#: keeps every Ray process of the tests on 127.0.0.1 (see the module's docstring); Ray
#: reads it when it is first imported, so it is set before that
LOCAL_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
os.environ.update(LOCAL_ONLY)


@attrs.frozen
class LocalCluster:
    cluster: object
    address: str
    head_id: str
    #: the extra node's id, and the node object to remove it by
    node_id: str
    node: object
    temp_dir: str

    def shutdown(self) -> None:
        """Stop every node of the cluster and remove its temporary directory."""
        self.cluster.shutdown()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def env(self, **more: str) -> dict[str, str]:
        """The environment of an orchestra process that joins this cluster."""
        return {**LOCAL_ONLY, **more}


#: one private directory for every Ray process of the tests (short enough for Ray's unix
#: socket paths), removed when the tests end. Ray writes the address of a cluster it starts
#: into its default directory ($RAY_TMPDIR/ray, else $TMPDIR/ray or /tmp/ray) and fails when
#: that is missing, so the default points in here too: nothing outside it is needed or left.
RAY_BASE = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
os.makedirs(os.path.join(RAY_BASE, "ray"))
os.environ["RAY_TMPDIR"] = RAY_BASE
atexit.register(shutil.rmtree, RAY_BASE, ignore_errors=True)
#: the $TMPDIR of every Ray node the tests start: what the executor keeps on a node
#: (``orchestra-ray/``, docs/ray.md) lands in here, and goes with RAY_BASE
NODE_TMPDIR = os.path.join(RAY_BASE, "tmp")
os.makedirs(NODE_TMPDIR)


@contextlib.contextmanager
def node_environment(**more: str) -> Iterator[None]:
    """Start Ray nodes in here: they take this process's environment, with their $TMPDIR
    in NODE_TMPDIR and ``more`` (nothing of it stays in this process's)."""
    changed = {"TMPDIR": NODE_TMPDIR, **more}
    saved = {name: os.environ.get(name) for name in changed}
    os.environ.update(changed)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def start_cluster(head_resources: dict, node_resources: dict) -> LocalCluster:
    temp_dir = tempfile.mkdtemp(prefix="c-", dir=RAY_BASE)
    try:
        with node_environment():
            return _start_cluster(temp_dir, head_resources, node_resources)
    except BaseException:  # a cluster that failed to start leaves nothing behind either
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise


def _start_cluster(temp_dir: str, head_resources: dict, node_resources: dict) -> LocalCluster:
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "resources": head_resources,
            "include_dashboard": False,
            "temp_dir": temp_dir,
            # a node's death is noticed in about a second instead of tens of seconds
            "_system_config": {
                "health_check_initial_delay_ms": 0,
                "health_check_period_ms": 500,
                "health_check_failure_threshold": 2,
            },
        },
    )
    node = cluster.add_node(num_cpus=1, resources=node_resources)
    cluster.wait_for_nodes()
    head_id = cluster.head_node.node_id
    return LocalCluster(cluster, cluster.address, head_id, node.node_id, node, temp_dir)


#: a secret the nodes have in their environment (they inherit this process's)
NODE_SECRET = ("ORCHESTRA_RAY_TEST_TOKEN", "the-nodes-own-token")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalCluster]:
    """A head with the tool ``shell`` (2 at once) and a node with the tool ``scripted``;
    both have ``NODE_SECRET`` in their environment."""
    name, value = NODE_SECRET
    with node_environment(**{name: value}):
        local = start_cluster({"tool:shell": 2}, {"tool:scripted": 1})
    yield local
    local.shutdown()
