# %% [markdown]
# # Exploring the lake built by `make demo`
# Run cell by cell in VS Code / Jupyter (jupytext percent format), or as a script:
# `.venv/bin/python notebooks/explore.py`. It only reads the lake.

# %%
from __future__ import annotations

from datetime import date

from pyspark.sql import functions as F

from lakehouse.config import load_env, load_tables
from lakehouse.payments.gold import with_recency
from lakehouse.payments.silver import build_transactions
from lakehouse.session import default_conf_dir, get_spark
from lakehouse.tables import Lake

env = load_env(default_conf_dir(), "local")
lake = Lake(env, load_tables(default_conf_dir()))
spark = get_spark(env, "notebook")


def table(name: str):  # noqa: ANN201
    return spark.read.format("delta").load(lake.path(name))


# %% Quarantine: which rules rejected what
q = spark.read.format("delta").load(lake.quarantine_path("silver.transactions"))
q.select(F.explode("errors").alias("rule")).groupBy("rule").count().orderBy(F.desc("count")).show()

# %% Any transform works on any DataFrame: re-check a sample of bronze rows
bronze = table("bronze.transactions").limit(1000).withColumn("__raw", F.lit(None)).withColumn("__source_file", F.col("_source_file"))
checked = build_transactions(bronze, table("silver.fx_rates"), env.reporting_currency)
checked.groupBy(F.size("_errors").alias("errors")).count().show()

# %% Top merchants by approved amount
table("gold.merchant_daily_kpis").groupBy("merchant_id", "merchant_name").agg(
    F.sum("amount_reporting").alias("amount"), F.avg("chargeback_rate").alias("cb_rate")
).orderBy(F.desc("amount")).show(10)

# %% Customer 360 with recency as of a date
with_recency(table("gold.customer_360"), date(2026, 2, 1)).orderBy(F.desc("lifetime_value")).show(5)

# %% SCD2 history of the customers who changed most
cust = table("silver.customers")
top = cust.groupBy("customer_id").count().orderBy(F.desc("count")).first()
cust.where(F.col("customer_id") == top.customer_id).orderBy("valid_from").select(
    "customer_id", "email", "city", "valid_from", "valid_to", "is_current"
).show(truncate=False)

# %% The run log
table_runlog = spark.read.format("delta").load(lake.ops_path("run_log"))
table_runlog.orderBy(F.desc("started_at")).select("run_id", "table", "status", "seconds", "rows_read", "rows_inserted",
                                                   "rows_quarantined", "rows_duplicate").show(20, truncate=False)
