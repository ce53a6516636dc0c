"""CPU planning for Train workers + Ray Data (pure logic, no Ray)."""

import pytest

from orchestrator.resources import plan_resources


def test_two_workers_on_a_two_core_laptop_overcommit_logical_cpus():
    plan = plan_resources(cluster_cpus=2, num_workers=2)
    assert plan.strategy == "overcommit"
    assert plan.init_kwargs() == {"num_cpus": 4.0}
    assert plan.resources_per_worker == {"CPU": 1.0}
    assert plan.data_cpus == 2.0 and plan.torch_threads == 1


def test_attached_small_cluster_gets_fractional_workers():
    plan = plan_resources(cluster_cpus=2, num_workers=2, starting_local=False)
    assert plan.strategy == "fractional" and plan.init_kwargs() == {}
    assert plan.cpus_per_worker == pytest.approx(0.5) and plan.data_cpus == pytest.approx(1.0)
    odd = plan_resources(cluster_cpus=8, num_workers=7, starting_local=False)
    assert odd.cpus_per_worker == pytest.approx(0.85)  # multiples of 0.05 below one CPU
    whole = plan_resources(cluster_cpus=9, num_workers=3, data_cpus=4, strategy="fractional")
    assert whole.cpus_per_worker == 1.0  # above 1 CPU only whole CPUs are allowed


def test_big_machine_needs_nothing():
    plan = plan_resources(cluster_cpus=16, num_workers=4)
    assert plan.strategy == "fits" and plan.init_kwargs() == {} and plan.cpus_per_worker == 1.0
    assert plan.data_cpus == 12 and plan.torch_threads == 4


def test_tune_driver_counts_and_overrides(monkeypatch):
    plan = plan_resources(cluster_cpus=4, num_workers=2, driver_cpus=1)  # 2 + 2 + 1 > 4
    assert plan.strategy == "overcommit" and plan.init_kwargs() == {"num_cpus": 5.0}
    forced = plan_resources(cluster_cpus=2, num_workers=2, strategy="fractional")
    assert forced.strategy == "fractional" and forced.cpus_per_worker == pytest.approx(0.5)
    monkeypatch.setenv("POSELAB_RAY_STRATEGY", "fractional")
    assert plan_resources(cluster_cpus=2, num_workers=2).strategy == "fractional"
    monkeypatch.setenv("POSELAB_RAY_STRATEGY", "bogus")
    with pytest.raises(ValueError, match="unknown resource strategy 'bogus'"):
        plan_resources(cluster_cpus=2, num_workers=2)


def test_impossible_requests_are_errors():
    with pytest.raises(ValueError, match="cannot overcommit CPUs of a running cluster"):
        plan_resources(cluster_cpus=2, num_workers=2, starting_local=False, strategy="overcommit")
    with pytest.raises(ValueError, match="too few for 40 workers"):
        plan_resources(cluster_cpus=2, num_workers=40, starting_local=False)
    with pytest.raises(ValueError):
        plan_resources(cluster_cpus=0, num_workers=1)
