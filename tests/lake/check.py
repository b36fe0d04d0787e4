"""An independent reader of the lake (DuckDB), for the lake tests and `make demo-connect`.

Prints one JSON object: transaction rows, distinct transaction ids, the per-account count and
sum of signed cents, and customer rows. With --s3 BUCKET/PREFIX --endpoint URL the lake's objects
are first downloaded with boto3 (DuckDB's S3 support is an extension downloaded at run time,
which this machine cannot do).

    python tests/lake/check.py DIR
    python tests/lake/check.py --s3 bucket/lake --endpoint http://127.0.0.1:5000 DIR
"""

import argparse
import json
import os
import pathlib
import tempfile

import duckdb


def download(bucket_prefix, endpoint, into):
    import boto3

    bucket, _, prefix = bucket_prefix.partition("/")
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
    )
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for item in page.get("Contents", []):
            key = item["Key"]
            target = pathlib.Path(into) / key[len(prefix):].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target))


def table(lake, name):
    files = sorted(pathlib.Path(lake, name).rglob("*.parquet"))
    if not files:
        return None
    return f"read_parquet('{lake}/{name}/**/*.parquet', hive_partitioning = true)"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("lake")
    parser.add_argument("--s3")
    parser.add_argument("--endpoint")
    args = parser.parse_args()
    lake = args.lake
    if args.s3:
        lake = tempfile.mkdtemp(prefix="lake-")
        download(args.s3, args.endpoint, lake)
    db = duckdb.connect()
    result = {"rows": 0, "distinct": 0, "accounts": {}, "customers": 0, "dates": 0}
    transactions = table(lake, "transactions")
    if transactions:
        rows, distinct, dates = db.execute(
            f"SELECT count(*), count(DISTINCT transaction_id), count(DISTINCT dt) FROM {transactions}"
        ).fetchone()
        result.update(rows=rows, distinct=distinct, dates=dates)
        per_account = db.execute(
            f"SELECT account_number, count(*), sum(signed_amount_cents) FROM {transactions} GROUP BY 1"
        ).fetchall()
        result["accounts"] = {a: {"transactions": n, "sum_cents": int(s)} for a, n, s in per_account}
    customers = table(lake, "customers")
    if customers:
        result["customers"] = db.execute(f"SELECT count(*) FROM {customers}").fetchone()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
