"""What a job runs in: ``context.RunContext`` (device, execution, model, programs, the overwrite rule, the resolved
block of config.yaml), opened once per job by ``context.open_run`` and shared by both jobs."""
