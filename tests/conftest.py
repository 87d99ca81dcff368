"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks: one thread is faster than two fighting over a shared CPU, and bitwise reproducible."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """The module's one-node SLURM cluster with accounting (tests/slurm_cluster.py), stopped after the module;
    or why it has none: a sentence (this machine cannot run one: not root, packages missing) or the error
    its start raised. Tests take it through `slurm_cluster`."""
    import slurm_cluster

    reason = slurm_cluster.unavailable()
    if reason:
        yield reason
        return
    try:
        cluster = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    except Exception as error:  # the tests that need it fail with it; the module's others run
        yield error
        return
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def slurm_cluster(slurm):
    """The module's SLURM cluster; the test is skipped, with the reason, where this machine cannot run one."""
    if isinstance(slurm, str):
        pytest.skip(f"no one-node SLURM cluster: {slurm}")
    if isinstance(slurm, Exception):
        raise slurm
    return slurm


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """An SSH server on 127.0.0.1 with a key generated for the test (tests/ssh_server.py), stopped after the
    module; the test is skipped, with the reason, where this machine cannot run one."""
    import ssh_server

    reason = ssh_server.unavailable()
    if reason:
        pytest.skip(f"no SSH server: {reason}")
    server = ssh_server.start(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()
