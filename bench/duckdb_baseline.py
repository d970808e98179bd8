"""Baseline: the lakehouse's bronze / silver / gold transformations in DuckDB SQL, Parquet output.

    .venv/bin/python bench/duckdb_baseline.py --stage bronze|silver|gold --raw RAW --out OUT [--threads 2]

What a user might write instead of Spark on one machine: the same raw files, the same typing,
cleaning, validation (the quarantine rules that decide whether a row is kept), deduplication
(latest version per key), FX conversion, customers as SCD2, and the two gold marts, written as
Parquet (silver.transactions and gold.merchant_daily_kpis partitioned by event date, as in the
lake). Not reproduced: Delta commits, incremental state, the quality metrics and run log, replay.
Each stage is run by ``bench/pipeline_bench.py`` in a fresh process and prints its row counts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import duckdb

from lakehouse.payments.reference import CURRENCIES, country_aliases

CURRENCY_LIST = ", ".join(f"'{c}'" for c, _ in CURRENCIES)
TS_OFFSET = "try_strptime(regexp_replace(trim({c}), 'Z$', '+00:00'), '%Y-%m-%dT%H:%M:%S%z')::TIMESTAMP"

BRONZE = {
    # source: (reader, columns)
    "transactions": (
        "json",
        "transaction_id, customer_id, merchant_id, amount, currency, event_time, channel, card_number, device_id, ip_address, "
        "status, updated_at",
    ),
    "merchants": ("json", "merchant_id, name, category, address, risk, onboarded_at, updated_at"),
    "customers": (
        "csv",
        "customer_id, first_name, last_name, email, phone, birth_date, street, city, postcode, country, signup_date, updated_at",
    ),
    "chargebacks": ("csv", "chargeback_id, transaction_id, reason_code, amount, currency, chargeback_date, received_at"),
    "fx_rates": ("csv", "rate_date, base_currency, quote_currency, rate"),
}
MERCHANT_TYPES = (
    "{'merchant_id': 'VARCHAR', 'name': 'VARCHAR', 'category': 'STRUCT(mcc VARCHAR, name VARCHAR)', "
    "'address': 'STRUCT(city VARCHAR, country VARCHAR)', 'risk': 'STRUCT(tier VARCHAR, score VARCHAR)', "
    "'onboarded_at': 'VARCHAR', 'updated_at': 'VARCHAR'}"
)


def varchar_columns(cols: str) -> str:
    return "{" + ", ".join(f"'{c.strip()}': 'VARCHAR'" for c in cols.split(",")) + "}"


def bronze(con: duckdb.DuckDBPyConnection, raw: Path, out: Path) -> dict[str, int]:
    counts = {}
    for source, (fmt, cols) in BRONZE.items():
        glob = f"{raw}/{source}/arrival_date=*/part-*"
        if fmt == "json":
            types = MERCHANT_TYPES if source == "merchants" else varchar_columns(cols)
            reader = (
                f"read_json('{glob}', format='newline_delimited', columns={types}, filename=true, ignore_errors=true, "
                "hive_partitioning=true)"
            )
        else:
            types = varchar_columns(cols)
            reader = (
                f"read_csv('{glob}', header=true, delim=',', quote='\"', escape='\"', columns={types}, auto_detect=false, "
                "strict_mode=false, null_padding=true, parallel=false, ignore_errors=true, filename=true, hive_partitioning=true)"
            )
        sql = f"SELECT {cols}, filename AS _source_file, arrival_date::DATE AS _arrival_date, now() AS _ingested_at FROM {reader}"
        counts[source] = copy(con, sql, out / "bronze" / source)
    return counts


def copy(con: duckdb.DuckDBPyConnection, sql: str, dest: Path, partition_by: str | None = None) -> int:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    target = f"'{dest}'" if partition_by else f"'{dest}/data.parquet'"
    opts = f"FORMAT parquet, PARTITION_BY ({partition_by})" if partition_by else "FORMAT parquet"
    con.execute(f"COPY ({sql}) TO {target} ({opts})")
    return con.execute(f"SELECT count(*) FROM read_parquet('{dest}/**/*.parquet')").fetchone()[0]


def macros(con: duckdb.DuckDBPyConnection) -> None:
    aliases = country_aliases()
    con.execute("CREATE OR REPLACE TABLE country_alias (alias VARCHAR, iso VARCHAR)")
    con.executemany("INSERT INTO country_alias VALUES (?, ?)", list(aliases.items()))
    con.execute("CREATE OR REPLACE MACRO norm(s) AS nullif(trim(regexp_replace(s, '\\s+', ' ', 'g')), '')")
    con.execute("CREATE OR REPLACE MACRO code(s) AS upper(norm(s))")
    con.execute(
        "CREATE OR REPLACE MACRO initcap(s) AS "
        "array_to_string(list_transform(string_split(lower(s), ' '), lambda w: upper(left(w, 1)) || substr(w, 2)), ' ')"
    )
    con.execute(
        "CREATE OR REPLACE MACRO luhn_ok(s) AS CASE WHEN s IS NULL THEN NULL ELSE regexp_full_match(s, '[0-9]{1,19}') AND "
        "list_sum(list_transform(range(length(s)), lambda i: CASE WHEN i % 2 = 1 THEN "
        "(CASE WHEN ascii(substr(s, length(s) - i, 1)) - 48 > 4 THEN 2 * (ascii(substr(s, length(s) - i, 1)) - 48) - 9 "
        "ELSE 2 * (ascii(substr(s, length(s) - i, 1)) - 48) END) ELSE ascii(substr(s, length(s) - i, 1)) - 48 END)) % 10 = 0 END"
    )


def silver(con: duckdb.DuckDBPyConnection, out: Path, reporting: str = "EUR") -> dict[str, int]:
    macros(con)
    b = out / "bronze"
    s = out / "silver"
    counts: dict[str, int] = {}
    con.execute(f"""CREATE OR REPLACE TABLE fx AS
        SELECT try_cast(rate_date AS DATE) AS rate_date, code(base_currency) AS base_currency,
               code(quote_currency) AS quote_currency, try_cast(rate AS DECIMAL(18,8)) AS rate, _ingested_at
        FROM read_parquet('{b}/fx_rates/*.parquet')""")
    fx_ok = "rate_date IS NOT NULL AND rate > 0 AND base_currency = 'EUR' AND quote_currency IN (" + CURRENCY_LIST + ")"
    con.execute(f"""CREATE OR REPLACE TABLE fx_clean AS SELECT * FROM fx WHERE {fx_ok}
        QUALIFY row_number() OVER (PARTITION BY rate_date, quote_currency ORDER BY _ingested_at DESC) = 1""")
    counts["fx_rates"] = copy(con, "SELECT * FROM fx_clean", s / "fx_rates")
    counts["quarantine.fx_rates"] = copy(con, f"SELECT * FROM fx WHERE NOT coalesce({fx_ok}, false)", s / "quarantine_fx_rates")
    con.execute("""CREATE OR REPLACE TABLE rates AS
        SELECT rate_date, quote_currency AS currency, rate FROM fx_clean
        UNION ALL SELECT DISTINCT rate_date, 'EUR', 1::DECIMAL(18,8) FROM fx_clean""")

    con.execute(f"""CREATE OR REPLACE TABLE cust AS
        SELECT code(customer_id) AS customer_id,
               CASE WHEN norm(first_name) = upper(norm(first_name)) THEN initcap(norm(first_name)) ELSE norm(first_name) END AS first_name,
               CASE WHEN norm(last_name) = upper(norm(last_name)) THEN initcap(norm(last_name)) ELSE norm(last_name) END AS last_name,
               lower(norm(email)) AS email, regexp_replace(norm(phone), '[^0-9+]', '', 'g') AS phone,
               try_cast(birth_date AS DATE) AS birth_date, norm(c.birth_date) IS NULL AS no_birth_date,
               norm(street) AS street, norm(city) AS city, norm(postcode) AS postcode,
               a.iso AS country_code, try_cast(signup_date AS DATE) AS signup_date,
               try_strptime(updated_at, '%Y-%m-%d %H:%M:%S') AS valid_from, _source_file, _ingested_at
        FROM read_parquet('{b}/customers/*.parquet') c LEFT JOIN country_alias a ON a.alias = code(c.country)""")
    cust_ok = (
        "customer_id IS NOT NULL AND (birth_date IS NOT NULL OR no_birth_date) AND valid_from IS NOT NULL AND country_code IS NOT NULL "
        "AND regexp_full_match(email, '[^@\\s]+@[^@\\s]+\\.[^@\\s]+')"
    )
    counts["customers"] = copy(
        con,
        f"""SELECT *, lead(valid_from) OVER w AS valid_to, lead(valid_from) OVER w IS NULL AS is_current FROM (
              SELECT * FROM cust WHERE {cust_ok}
              QUALIFY row_number() OVER (PARTITION BY customer_id, valid_from ORDER BY _source_file) = 1)
            WINDOW w AS (PARTITION BY customer_id ORDER BY valid_from)""",
        s / "customers",
    )
    counts["quarantine.customers"] = copy(con, f"SELECT * FROM cust WHERE NOT coalesce({cust_ok}, false)", s / "quarantine_customers")

    con.execute(f"""CREATE OR REPLACE TABLE merch AS
        SELECT code(merchant_id) AS merchant_id, norm(name) AS merchant_name, norm(category.mcc) AS mcc,
               lower(norm(category.name)) AS category, norm(address.city) AS city, a.iso AS country_code,
               lower(norm(risk.tier)) AS risk_tier, try_cast(norm(risk.score) AS DOUBLE) AS risk_score,
               try_cast(onboarded_at AS DATE) AS onboarded_at, {TS_OFFSET.format(c="updated_at")} AS updated_at, _source_file, _ingested_at
        FROM read_parquet('{b}/merchants/*.parquet') m LEFT JOIN country_alias a ON a.alias = code(m.address.country)""")
    m_ok = "merchant_id IS NOT NULL AND updated_at IS NOT NULL AND country_code IS NOT NULL AND risk_tier IN ('low', 'medium', 'high')"
    counts["merchants"] = copy(
        con,
        f"SELECT * FROM merch WHERE {m_ok} QUALIFY row_number() OVER (PARTITION BY merchant_id ORDER BY updated_at DESC, _source_file) = 1",
        s / "merchants",
    )
    con.execute(f"CREATE OR REPLACE TABLE merch_clean AS SELECT * FROM read_parquet('{s}/merchants/*.parquet')")

    con.execute(f"""CREATE OR REPLACE TABLE tx AS
        WITH typed AS (
          SELECT norm(transaction_id) AS transaction_id, code(customer_id) AS customer_id, code(merchant_id) AS merchant_id,
                 {TS_OFFSET.format(c="event_time")} AS event_time, try_cast(amount AS DECIMAL(18,2)) AS amount,
                 code(currency) AS currency, lower(norm(channel)) AS channel,
                 regexp_replace(coalesce(card_number, ''), '\\D', '', 'g') AS card, norm(device_id) AS device_id,
                 norm(ip_address) AS ip_address, lower(norm(status)) AS status, {TS_OFFSET.format(c="updated_at")} AS updated_at,
                 _source_file, _ingested_at
          FROM read_parquet('{b}/transactions/*.parquet'))
        SELECT t.* EXCLUDE (card), t.event_time::DATE AS event_date,
               CASE WHEN length(card) >= 12 THEN sha256(card) END AS card_fingerprint,
               CASE WHEN length(card) >= 12 THEN right(card, 4) END AS card_last4, luhn_ok(nullif(card, '')) AS card_ok,
               round(t.amount / f.rate * r.rate, 2)::DECIMAL(18,2) AS amount_reporting, '{reporting}' AS reporting_currency,
               f.rate IS NOT NULL AND r.rate IS NOT NULL AS fx_found
        FROM typed t
        LEFT JOIN rates f ON f.rate_date = t.event_time::DATE AND f.currency = t.currency
        LEFT JOIN rates r ON r.rate_date = t.event_time::DATE AND r.currency = '{reporting}'""")
    tx_ok = (
        "transaction_id IS NOT NULL AND customer_id IS NOT NULL AND merchant_id IS NOT NULL AND event_time IS NOT NULL "
        f"AND amount > 0 AND amount <= 1000000 AND currency IN ({CURRENCY_LIST}) AND fx_found AND coalesce(card_ok, false) "
        "AND status IN ('approved', 'declined', 'pending') AND updated_at IS NOT NULL"
    )
    counts["transactions"] = copy(
        con,
        f"""SELECT *, customer_id IN (SELECT customer_id FROM cust) AS customer_known,
                   merchant_id IN (SELECT merchant_id FROM merch_clean) AS merchant_known
            FROM tx WHERE {tx_ok}
            QUALIFY row_number() OVER (PARTITION BY transaction_id ORDER BY updated_at DESC, _source_file) = 1""",
        s / "transactions",
        partition_by="event_date",
    )
    counts["quarantine.transactions"] = copy(con, f"SELECT * FROM tx WHERE NOT coalesce({tx_ok}, false)", s / "quarantine_transactions")

    con.execute(f"""CREATE OR REPLACE TABLE cb AS
        WITH typed AS (
          SELECT norm(chargeback_id) AS chargeback_id, norm(transaction_id) AS transaction_id, norm(reason_code) AS reason_code,
                 try_cast(amount AS DECIMAL(18,2)) AS amount, code(currency) AS currency,
                 try_cast(chargeback_date AS DATE) AS chargeback_date,
                 try_strptime(received_at, '%Y-%m-%d %H:%M:%S') AS received_at, _source_file, _ingested_at
          FROM read_parquet('{b}/chargebacks/*.parquet'))
        SELECT t.*, round(t.amount / f.rate * r.rate, 2)::DECIMAL(18,2) AS amount_reporting,
               f.rate IS NOT NULL AND r.rate IS NOT NULL AS fx_found
        FROM typed t LEFT JOIN rates f ON f.rate_date = t.chargeback_date AND f.currency = t.currency
        LEFT JOIN rates r ON r.rate_date = t.chargeback_date AND r.currency = '{reporting}'""")
    cb_ok = (
        "chargeback_id IS NOT NULL AND transaction_id IS NOT NULL AND amount > 0 AND chargeback_date IS NOT NULL "
        f"AND received_at IS NOT NULL AND currency IN ({CURRENCY_LIST}) AND fx_found"
    )
    counts["chargebacks"] = copy(
        con,
        f"""SELECT * FROM cb WHERE {cb_ok}
            QUALIFY row_number() OVER (PARTITION BY chargeback_id ORDER BY received_at DESC, _source_file) = 1""",
        s / "chargebacks",
    )
    counts["quarantine.chargebacks"] = copy(con, f"SELECT * FROM cb WHERE NOT coalesce({cb_ok}, false)", s / "quarantine_chargebacks")
    return counts


def gold(con: duckdb.DuckDBPyConnection, out: Path) -> dict[str, int]:
    s, g = out / "silver", out / "gold"
    tx = f"read_parquet('{s}/transactions/**/*.parquet', hive_partitioning=true)"
    cb = f"read_parquet('{s}/chargebacks/*.parquet')"
    m = f"read_parquet('{s}/merchants/*.parquet')"
    counts = {}
    counts["merchant_daily_kpis"] = copy(
        con,
        f"""WITH c AS (SELECT DISTINCT transaction_id, true AS has_cb FROM {cb}),
             a AS (SELECT t.merchant_id, t.event_date, count(*) AS transactions,
                          sum((status = 'approved')::INT) AS approved,
                          sum(CASE WHEN status = 'approved' THEN amount_reporting END)::DECIMAL(18,2) AS amount_reporting,
                          sum(CASE WHEN status = 'approved' AND has_cb THEN 1 ELSE 0 END) AS chargebacks,
                          count(DISTINCT customer_id) AS distinct_customers,
                          quantile_cont(amount_reporting, 0.5) AS p50, quantile_cont(amount_reporting, 0.95) AS p95
                   FROM {tx} t LEFT JOIN c USING (transaction_id) GROUP BY ALL)
        SELECT a.event_date, a.merchant_id, m.merchant_name, m.category, transactions, approved,
               coalesce(a.amount_reporting, 0) AS amount_reporting, round(approved / transactions, 4) AS approval_rate,
               chargebacks, round(CASE WHEN approved > 0 THEN chargebacks / approved ELSE 0 END, 4) AS chargeback_rate,
               distinct_customers, round(p50, 2)::DECIMAL(18,2) AS p50_amount, round(p95, 2)::DECIMAL(18,2) AS p95_amount
        FROM a LEFT JOIN {m} m USING (merchant_id)""",
        g / "merchant_daily_kpis",
        partition_by="event_date",
    )
    counts["customer_360"] = copy(
        con,
        f"""WITH c AS (SELECT transaction_id, max(amount_reporting) AS cb_amount FROM {cb} GROUP BY ALL),
             e AS (SELECT t.*, c.cb_amount, m.category FROM {tx} t LEFT JOIN c USING (transaction_id)
                   LEFT JOIN {m} m USING (merchant_id) WHERE status = 'approved'),
             stats AS (SELECT customer_id, count(*) AS frequency, sum(amount_reporting)::DECIMAL(18,2) AS gross_spend,
                              sum(coalesce(cb_amount, 0))::DECIMAL(18,2) AS charged_back, count(cb_amount) AS chargebacks,
                              min(event_date) AS first_transaction_date, max(event_date) AS last_transaction_date,
                              round(avg(amount_reporting), 2)::DECIMAL(18,2) AS avg_amount FROM e GROUP BY ALL),
             fav AS (SELECT customer_id, list(category ORDER BY spend DESC, category) AS favourite_categories FROM (
                       SELECT * FROM (SELECT customer_id, category, sum(amount_reporting) AS spend FROM e
                                      WHERE category IS NOT NULL GROUP BY ALL)
                       QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY spend DESC, category) <= 3) GROUP BY ALL)
        SELECT c.customer_id, first_name, last_name, country_code, city, signup_date, valid_from AS attributes_since,
               coalesce(frequency, 0) AS frequency, coalesce(gross_spend, 0) AS gross_spend, coalesce(charged_back, 0) AS charged_back,
               (coalesce(gross_spend, 0) - coalesce(charged_back, 0))::DECIMAL(18,2) AS lifetime_value,
               coalesce(chargebacks, 0) AS chargebacks, avg_amount, first_transaction_date, last_transaction_date,
               coalesce(favourite_categories, []) AS favourite_categories
        FROM read_parquet('{s}/customers/*.parquet') c LEFT JOIN stats USING (customer_id) LEFT JOIN fav USING (customer_id)
        WHERE c.is_current""",
        g / "customer_360",
    )
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", choices=("bronze", "silver", "gold"), required=True)
    p.add_argument("--raw", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--memory", default="8GB")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(args.out / f"work-{args.stage}.duckdb"))  # on disk: spills like Spark would
    con.execute(f"SET threads = {args.threads}; SET memory_limit = '{args.memory}'; SET preserve_insertion_order = false")
    t0 = time.monotonic()
    counts = {
        "bronze": lambda: bronze(con, args.raw, args.out),
        "silver": lambda: silver(con, args.out),
        "gold": lambda: gold(con, args.out),
    }[args.stage]()
    con.close()
    (args.out / f"work-{args.stage}.duckdb").unlink(missing_ok=True)
    print(json.dumps({"stage": args.stage, "seconds": round(time.monotonic() - t0, 2), "rows": counts}))


if __name__ == "__main__":
    main()
