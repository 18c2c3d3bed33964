"""The README quick start through the Python client generated from
openapi/fastlane.json (openapi-python-client): submit a job, wait for it,
print its stdout. Usage: python3 python_quickstart.py BASE_URL IMAGE"""
import sys
import time

from fastlane_client import Client
from fastlane_client.api.executions import get_execution
from fastlane_client.api.jobs import create_job
from fastlane_client.models import JobCreated, JobRequest, StatusView

base, image = sys.argv[1], sys.argv[2]
client = Client(base_url=base, raise_on_unexpected_status=True)
created = create_job.sync(
    "python-client", client=client, body=JobRequest(image=image, command="echo it works")
)
assert isinstance(created, JobCreated), created
live = {StatusView.ENQUEUED, StatusView.PULLING, StatusView.RUNNING}
for _ in range(600):
    details = get_execution.sync(
        created.task_id, created.job_id, created.execution_id, client=client
    )
    if details.execution.status not in live:
        break
    time.sleep(0.1)
print(details.execution.status, details.execution.exit_code)
print(details.execution.log, end="")
