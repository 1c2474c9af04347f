"""AWS Batch inference job: scores input records in S3 through a SageMaker endpoint.

Run with ``python -m batch_job``; configuration comes from environment variables
(see :mod:`batch_job.config`). Depends only on the standard library and boto3.
"""
