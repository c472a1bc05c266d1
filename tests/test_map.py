"""Which tests say what each module of workshop/ does: a map a newcomer can read
to find the tests of a module before changing it (and run them: `bash scripts/test
tests/FILE.py`).  The test below keeps it whole: every module is in it, every file
it names exists.  A new module gets its line here with its test file.

Files named for their module come first (test_NAME.py, test_shell_NAME.py,
test_magic_NAME.py, test_targets_NAME.py); the rest exercise it through its callers."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODULE_TESTS: dict[str, list[str]] = {
    'workshop/__init__.py': ['test_import_cost.py'],
    'workshop/__main__.py': ['test_doctor.py', 'test_assign.py'],
    'workshop/arguments.py': ['test_magic_cgroup.py', 'test_completion.py'],
    'workshop/assign.py': ['test_assign.py', 'test_assignment_loop.py'],
    'workshop/batch.py': ['test_assignment_loop.py', 'test_grading.py'],
    'workshop/cell.py': ['test_cell_grammar.py'],
    'workshop/checks.py': ['test_checks.py', 'test_cell_grammar.py'],
    'workshop/cli.py': ['test_import_cost.py'],
    'workshop/coalesce.py': ['test_stream_order.py'],
    'workshop/completion.py': ['test_completion.py'],
    'workshop/console.py': ['test_console_tmux.py'],
    'workshop/cut_output.py': ['test_cut_output.py', 'test_iopub_limits.py'],
    'workshop/display.py': ['test_kernel_shell.py'],
    'workshop/doctor.py': ['test_doctor.py', 'test_targets_docker.py'],
    'workshop/engine.py': ['test_engine.py', 'test_targets_docker.py'],
    'workshop/errors.py': ['test_assign.py', 'test_cell_grammar.py'],
    'workshop/feedback.py': ['test_assignment_loop.py', 'test_grading_replay.py'],
    'workshop/grading/__init__.py': ['test_grading.py', 'test_assign.py'],
    'workshop/grading/copies.py': ['test_grading_copies.py'],
    'workshop/grading/grade.py': ['test_grading.py', 'test_grading_cell_ids.py'],
    'workshop/grading/notebook.py': ['test_grading_unreadable.py', 'test_grading_bounds.py'],
    'workshop/grading/paths.py': ['test_grading.py', 'test_assignment_loop.py'],
    'workshop/grading/reference.py': ['test_grading.py', 'test_assign.py'],
    'workshop/grading/rerun.py': ['test_rerun_isolation.py', 'test_grading.py'],
    'workshop/grading/results.py': ['test_grading_reports.py', 'test_output_gradescope.py'],
    'workshop/hub/__init__.py': ['test_hub.py', 'test_hub_commands.py'],
    'workshop/hub/config.py': ['test_hub.py', 'test_hub_vm.py'],
    'workshop/hub/server.py': ['test_hub.py', 'test_hub_commands.py', 'test_hub_vm.py'],
    'workshop/importer.py': ['test_importer.py'],
    'workshop/inspection.py': ['test_completion.py', 'test_conformance.py'],
    'workshop/kernel.py': ['test_import_cost.py'],
    'workshop/kernel_cgroup.py': ['test_rerun_isolation.py'],
    'workshop/kernelspec_install.py': ['test_import_cost.py'],
    'workshop/language.py': ['test_conformance.py'],
    'workshop/lms.py': ['test_grading_replay.py', 'test_assignment_loop.py'],
    'workshop/lock.py': ['test_known_hosts.py', 'test_shell_known_hosts.py', 'test_hub_vm.py'],
    'workshop/magics/__init__.py': ['test_magics.py', 'test_completion.py'],
    'workshop/magics/_shared.py': ['test_magic_chroot.py', 'test_magic_overlay.py'],
    'workshop/magics/cgroup.py': ['test_magic_cgroup.py'],
    'workshop/magics/check.py': ['test_magic_check.py'],
    'workshop/magics/chroot.py': ['test_magic_chroot.py'],
    'workshop/magics/cleanup.py': ['test_magic_cleanup.py'],
    'workshop/magics/context.py': ['test_magic_timeout.py', 'test_magics.py'],
    'workshop/magics/expect.py': ['test_magic_expect.py'],
    'workshop/magics/file.py': ['test_magic_file.py'],
    'workshop/magics/help.py': ['test_magic_help.py'],
    'workshop/magics/overlay.py': ['test_magic_overlay.py'],
    'workshop/magics/rootfs.py': ['test_magic_rootfs.py'],
    'workshop/magics/target.py': ['test_magic_target.py'],
    'workshop/magics/timeout.py': ['test_magic_timeout.py'],
    'workshop/magics/unshare.py': ['test_magic_unshare.py'],
    'workshop/notebook_file.py': ['test_notebook_file.py', 'test_session.py'],
    'workshop/outputs/__init__.py': ['test_grading_unreadable.py'],
    'workshop/outputs/feedback.py': ['test_assignment_loop.py'],
    'workshop/outputs/gradescope.py': ['test_output_gradescope.py'],
    'workshop/outputs/junit.py': ['test_run_reports.py'],
    'workshop/outputs/lms.py': ['test_grading_replay.py', 'test_assignment_loop.py'],
    'workshop/outputs/tables.py': ['test_grading_reports.py'],
    'workshop/pacing.py': ['test_iopub_limits.py'],
    'workshop/papermill_plugin.py': ['test_papermill.py'],
    'workshop/paths.py': ['test_targets.py', 'test_faults_vm.py'],
    'workshop/probe.py': ['test_probe.py', 'test_coverage_table.py'],
    'workshop/progress.py': ['test_rerun_progress.py'],
    'workshop/pytest_plugin.py': ['test_runner.py'],
    'workshop/quick_nbformat.py': ['test_grading_unreadable.py', 'test_runner.py'],
    'workshop/records.py': ['test_records.py', 'test_badge.py'],
    'workshop/reports.py': ['test_grading.py', 'test_grading_fuzz.py'],
    'workshop/run_reports.py': ['test_run_reports.py'],
    'workshop/runner.py': ['test_runner.py', 'test_assignment_loop.py'],
    'workshop/session.py': ['test_session.py', 'test_framing_attacks.py'],
    'workshop/settings.py': ['test_framing_attacks.py', 'test_session.py'],
    'workshop/shell/__init__.py': ['test_known_hosts.py'],
    'workshop/shell/channels.py': ['test_shell_channels.py', 'test_framing_fuzz.py'],
    'workshop/shell/clean.py': ['test_shell_clean.py'],
    'workshop/shell/framing.py': ['test_shell_framing.py', 'test_framing_fuzz.py'],
    'workshop/shell/known_hosts.py': ['test_shell_known_hosts.py', 'test_known_hosts.py'],
    'workshop/shell/leftovers.py': ['test_shell_leftovers.py', 'test_leftovers.py'],
    'workshop/shell/ordered.py': ['test_shell_ordered.py'],
    'workshop/shell/persistent.py': ['test_shell_persistent.py', 'test_framing_fuzz.py'],
    'workshop/shell/result.py': ['test_shell_result.py'],
    'workshop/shell/ssh.py': ['test_shell_ssh.py', 'test_faults_vm.py'],
    'workshop/store.py': ['test_resume.py'],
    'workshop/targets/__init__.py': ['test_targets.py', 'test_targets_bakerx.py'],
    'workshop/targets/bakerx.py': ['test_targets_bakerx.py'],
    'workshop/targets/docker.py': ['test_targets_docker.py'],
    'workshop/targets/local.py': ['test_targets.py', 'test_kernel_shell.py'],
    'workshop/targets/qemu.py': ['test_targets_qemu.py', 'test_vm_snapshot.py'],
    'workshop/targets/ssh.py': ['test_targets.py', 'test_known_hosts.py'],
    'workshop/targets/vagrant.py': ['test_targets_vagrant.py', 'test_targets_sudo.py'],
    'workshop/tasks.py': ['test_honest_tasks.py', 'test_notebook_file.py'],
    'workshop/text.py': ['test_kernel_shell.py', 'test_grading_reports.py'],
    'workshop/vm/__init__.py': ['test_vm.py', 'test_rerun_sealed.py'],
    'workshop/vm/agent.py': ['test_rerun_sealed.py'],
    'workshop/vm/clone.py': ['test_vm_snapshot.py', 'test_hub_vm.py'],
    'workshop/vm/image.py': ['test_vm_units.py'],
    'workshop/vm/initrd.py': ['test_vm_units.py'],
    'workshop/vm/machine.py': ['test_rerun_sealed.py', 'test_targets.py'],
    'workshop/vm/qmp.py': ['test_vm.py', 'test_faults_vm.py'],
    'workshop/vm/snapshot.py': ['test_vm_snapshot.py'],
}


def test_every_module_maps_to_existing_test_files():
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "workshop").rglob("*.py")}
    missing = sorted(modules - set(MODULE_TESTS))
    assert not missing, f"modules with no tests in tests/test_map.py: {missing}"
    gone = sorted(set(MODULE_TESTS) - modules)
    assert not gone, f"tests/test_map.py names modules that no longer exist: {gone}"
    absent = sorted({f for files in MODULE_TESTS.values() for f in files if not (ROOT / "tests" / f).exists()})
    assert not absent, f"tests/test_map.py names test files that do not exist: {absent}"
    assert all(MODULE_TESTS.values()), "a module in tests/test_map.py with no test file"
