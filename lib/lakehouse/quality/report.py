"""The quality report: one self-contained HTML file, charts first.

Per table: each rule's pass rate over the last runs (a line chart), the quarantine by rule (a bar
chart) with sample records whose PII is masked, and each column's profile (null share, quantiles,
top values); then the alerts (anomalies, schema drift). The data is embedded as JSON and drawn as
SVG by a small inline script: no network, no library, opens anywhere.

Example::

    path = write_report(spark, lake, "/tmp/quality.html")
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.io import delta, fs
from lakehouse.tables import Lake

log = logging.getLogger(__name__)

SAMPLES_PER_RULE = 3


def mask(kind: str, value: Any) -> Any:
    """Mask a PII value for display: keep what helps recognise the defect, hide the person."""
    if value is None or not isinstance(value, str):
        return value if value is None else "***"
    if kind == "card_number":
        digits = "".join(ch for ch in value if ch.isdigit())
        return f"****{digits[-4:]}" if len(digits) >= 4 else "***"
    if kind == "email" and "@" in value:
        local, domain = value.split("@", 1)
        return f"{local[:1]}***@{domain}"
    if kind in ("ip_address",):
        return ".".join(value.split(".")[:1] + ["x", "x", "x"])
    return value[:1] + "***" if value else value


def mask_record(record: dict[str, Any], pii: dict[str, str]) -> dict[str, Any]:
    out = {}
    for k, v in record.items():
        if k in pii:
            out[k] = mask(pii[k], v)
        elif k == "_corrupt_record" and v:
            out[k] = f"<{len(v)} characters of unparseable text, not shown: may hold PII>"
        else:
            out[k] = v
    return out


def collect(spark: SparkSession, lake: Lake, last_runs: int = 12) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-able data."""
    read = lambda n: spark.read.format("delta").load(lake.ops_path(n)) if delta.is_delta(spark, lake.ops_path(n)) else None  # noqa: E731
    data: dict[str, Any] = {
        "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "lake": lake.env.lake_root,
        "tables": [],
    }
    metrics, profiles, alerts = read("quality_metrics"), read("quality_profiles"), read("quality_alerts")
    latest_profile = None
    if profiles is not None:
        row = profiles.orderBy(F.col("profiled_at").desc()).select("run_id").first()
        latest_profile = row[0] if row else None
    for layer in ("silver", "gold", "bronze"):  # bronze last: it only has its drift checks
        for spec in lake.layer(layer):
            t: dict[str, Any] = {
                "name": spec.name,
                "description": spec.description,
                "rules": [],
                "runs": [],
                "quarantine": [],
                "profile": [],
            }
            t["declared"] = [
                {"name": e.name, "severity": e.severity, "rule": e.describe(), "description": e.description} for e in spec.expectations
            ]
            if metrics is not None:
                m = metrics.where(F.col("table") == spec.name)
                runs = [
                    r[0]
                    for r in m.groupBy("run_id").agg(F.max("recorded_at").alias("t")).orderBy(F.col("t").desc()).limit(last_runs).collect()
                ]
                runs.reverse()
                t["runs"] = runs
                series: dict[str, dict[str, Any]] = {}
                for r in m.where(F.col("run_id").isin(runs)).collect():
                    s = series.setdefault(r["rule"], {"rule": r["rule"], "severity": r["severity"], "level": r["level"], "points": {}})
                    rate = (r["passed"] / r["evaluated"]) if r["level"] == "row" and r["evaluated"] else (1.0 if r["ok"] else 0.0)
                    s["points"][r["run_id"]] = {
                        "rate": rate,
                        "failed": r["failed"],
                        "evaluated": r["evaluated"],
                        "observed": r["observed"],
                        "threshold": r["threshold"],
                    }
                t["rules"] = sorted(series.values(), key=lambda s: s["rule"])
            qpath = lake.quarantine_path(spec.name) if spec.layer == "silver" else None
            if qpath and delta.is_delta(spark, qpath):
                q = spark.read.format("delta").load(qpath)
                pii = dict(lake.spec(spec.upstream[0]).pii)
                for r in q.select(F.explode("errors").alias("rule")).groupBy("rule").count().orderBy(F.col("count").desc()).collect():
                    samples = [
                        mask_record(json.loads(x["record"]), pii)
                        for x in q.where(F.array_contains("errors", r["rule"]))
                        .orderBy("quarantined_at", "record")
                        .limit(SAMPLES_PER_RULE)
                        .collect()
                    ]
                    for smp in samples:
                        smp.pop("_source_file", None)
                    t["quarantine"].append({"rule": r["rule"], "count": r["count"], "samples": samples})
            if profiles is not None and latest_profile:
                for p in profiles.where((F.col("run_id") == latest_profile) & (F.col("table") == spec.name)).orderBy("column").collect():
                    t["profile"].append(
                        {
                            "column": p["column"],
                            "type": p["type"],
                            "rows": p["rows"],
                            "null_share": p["null_share"],
                            "distinct": p["distinct_approx"],
                            "min": p["min"],
                            "max": p["max"],
                            "mean": p["mean"],
                            "quantiles": p["quantiles"],
                            "top": [[v["value"], v["count"]] for v in (p["top_values"] or [])],
                            "outliers": p["outliers"],
                        }
                    )
            if t["rules"] or t["quarantine"] or t["profile"]:
                data["tables"].append(t)
    data["alerts"] = []
    if alerts is not None:
        row = alerts.orderBy(F.col("raised_at").desc()).select("run_id").first()
        if row:
            data["alerts"] = [
                {"table": a["table"], "kind": a["kind"], "message": a["message"]} for a in alerts.where(F.col("run_id") == row[0]).collect()
            ]
    drift = []
    if metrics is not None:
        for r in metrics.where((F.col("rule") == "schema_drift") & ~F.col("ok")).orderBy(F.col("recorded_at").desc()).limit(20).collect():
            drift.append({"table": r["table"], "run_id": r["run_id"], "policy": r["check"], "fields": r["observed"]})
    data["drift"] = drift
    return data


def render(data: dict[str, Any]) -> str:
    """The HTML document (self-contained)."""
    payload = json.dumps(data, default=str).replace("</", "<\\/")
    return TEMPLATE.replace("__TITLE__", html.escape(f"Data quality report - {data['generated_at']}")).replace("__DATA__", payload)


def write_report(spark: SparkSession, lake: Lake, uri: str) -> str:
    """Collect, render and write the report to ``uri`` (a local path or any Hadoop URI)."""
    text = render(collect(spark, lake))
    fs.write_report(spark, uri, text)
    log.info("quality report written to %s (%d KiB)", uri, len(text) // 1024)
    return uri


def main(argv: Sequence[str] | None) -> int:
    from lakehouse.cli import context, parser
    from lakehouse.session import get_spark

    p = parser("Write the data quality report (self-contained HTML).")
    p.add_argument("--out", help="where to write it (default: <lake_root>/reports/quality.html)")
    args = p.parse_args(argv)
    ctx = context("quality_report", args)
    spark = get_spark(ctx.env, "lakehouse-quality-report", args.master)
    out = args.out or f"{ctx.env.lake_root}/reports/quality.html"
    write_report(spark, ctx.lake, out)
    print(f"quality report: {out}", flush=True)
    return 0


TEMPLATE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:36px;border-bottom:1px solid #ccc}h3{font-size:15px;margin:16px 0 4px}
.grid{display:flex;flex-wrap:wrap;gap:16px}.card{border:1px solid #ddd;border-radius:6px;padding:8px;background:#fafafa}
svg.chart{background:#fff}.muted{color:#777}.alert{background:#fff3f0;border-left:4px solid #d33;padding:6px 10px;margin:4px 0}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
pre{font-size:11px;white-space:pre-wrap;max-width:560px;margin:2px 0;background:#fff;border:1px solid #eee;padding:4px}
.legend span{display:inline-block;margin-right:10px;font-size:12px}.sw{display:inline-block;width:10px;height:10px;margin-right:3px}
</style></head>
<body data-rendered="false">
<h1>Data quality report</h1>
<div class="muted" id="meta"></div>
<div id="alerts"></div>
<div id="tables"></div>
<script type="application/json" id="data">__DATA__</script>
<script>
(function(){
window.onerror=function(m){document.body.setAttribute('data-error',String(m));};
const D=JSON.parse(document.getElementById('data').textContent);
const NS='http://www.w3.org/2000/svg';
const COLORS=['#1f77b4','#ff7f0e','#2ca02c','#d62728','#9467bd','#8c564b','#e377c2','#7f7f7f','#bcbd22','#17becf'];
function el(tag,attrs,parent,text){const e=document.createElementNS(NS,tag);for(const k in attrs)e.setAttribute(k,attrs[k]);if(text!==undefined)e.textContent=text;if(parent)parent.appendChild(e);return e;}
function h(tag,text,parent,cls){const e=document.createElement(tag);if(text!==undefined&&text!==null)e.textContent=text;if(cls)e.className=cls;if(parent)parent.appendChild(e);return e;}
function svg(parent,w,hgt,title){const c=h('div',null,parent,'card');h('div',title,c);const s=el('svg',{width:w,height:hgt,class:'chart','data-chart':title},c);return s;}
function pct(x){return (100*x).toFixed(x>0.999&&x<1?2:1)+'%';}
function lineChart(parent,title,runs,series){
  const W=560,H=220,L=48,R=12,T=10,B=40;const s=svg(parent,W,H,title);
  let lo=1;series.forEach(se=>runs.forEach(r=>{const p=se.points[r];if(p)lo=Math.min(lo,p.rate);}));lo=Math.max(0,Math.floor(lo*20)/20-0.05);
  const x=i=>L+(runs.length<2?(W-L-R)/2:i*(W-L-R)/(runs.length-1)),y=v=>T+(1-(v-lo)/(1-lo||1))*(H-T-B);
  el('line',{x1:L,y1:H-B,x2:W-R,y2:H-B,stroke:'#999'},s);el('line',{x1:L,y1:T,x2:L,y2:H-B,stroke:'#999'},s);
  [lo,(lo+1)/2,1].forEach(v=>{el('text',{x:4,y:y(v)+4,'font-size':10},s,pct(v));el('line',{x1:L,y1:y(v),x2:W-R,y2:y(v),stroke:'#eee'},s);});
  runs.forEach((r,i)=>{if(runs.length<=8||i%Math.ceil(runs.length/8)==0)el('text',{x:x(i)-20,y:H-B+14,'font-size':9},s,r.slice(4,13));});
  series.forEach((se,k)=>{const pts=runs.map((r,i)=>se.points[r]?[x(i),y(se.points[r].rate)]:null).filter(p=>p);
    if(!pts.length)return;const col=COLORS[k%COLORS.length];
    el('path',{d:'M'+pts.map(p=>p.join(',')).join('L'),fill:'none',stroke:col,'stroke-width':2,class:'series'},s);
    pts.forEach(p=>el('circle',{cx:p[0],cy:p[1],r:2.5,fill:col},s));});
  const lg=h('div',null,s.parentNode,'legend');series.forEach((se,k)=>{const sp=h('span',null,lg);const sw=h('span',null,sp,'sw');sw.style.background=COLORS[k%COLORS.length];sp.appendChild(document.createTextNode(se.rule+' ('+se.severity+')'));});
}
function barChart(parent,title,items,fmt){
  const W=560,rowH=18,L=190,H=items.length*rowH+20;const s=svg(parent,W,H,title);
  const max=Math.max(...items.map(i=>i[1]),1e-9);
  items.forEach((it,i)=>{const yy=10+i*rowH;el('text',{x:4,y:yy+12,'font-size':11},s,String(it[0]).slice(0,28));
    const w=Math.max(1,(W-L-70)*it[1]/max);el('rect',{x:L,y:yy+2,width:w,height:rowH-5,fill:it[2]||'#1f77b4',class:'bar'},s);
    el('text',{x:L+w+4,y:yy+12,'font-size':11},s,fmt?fmt(it[1]):String(it[1]));});
}
function boxPlot(parent,title,cols){
  const W=560,rowH=22,L=150,H=cols.length*rowH+20;const s=svg(parent,W,H,title);
  cols.forEach((c,i)=>{const q=c.quantiles;const yy=10+i*rowH;el('text',{x:4,y:yy+13,'font-size':11},s,c.column);
    const lo=q[0],hi=q[4];const sc=v=>L+((v-lo)/((hi-lo)||1))*(W-L-90);
    el('line',{x1:sc(q[0]),y1:yy+9,x2:sc(q[4]),y2:yy+9,stroke:'#555'},s);
    el('rect',{x:sc(q[1]),y:yy+3,width:Math.max(1,sc(q[3])-sc(q[1])),height:12,fill:'#9ecae1',stroke:'#3182bd',class:'box'},s);
    el('line',{x1:sc(q[2]),y1:yy+3,x2:sc(q[2]),y2:yy+15,stroke:'#08519c','stroke-width':2},s);
    el('text',{x:W-86,y:yy+13,'font-size':10},s,Number(q[0]).toPrecision(3)+'..'+Number(q[4]).toPrecision(3));});
}
document.getElementById('meta').textContent='Generated '+D.generated_at+' from '+D.lake+'. Pass rate = rows passing a rule / rows it was evaluated on; table-level rules: 100% when the check held.';
const A=document.getElementById('alerts');h('h2','Alerts',A);
if(!D.alerts.length&&!D.drift.length)h('div','No anomaly or drift alert in the latest runs.',A,'muted');
D.alerts.forEach(a=>h('div',a.kind+': '+a.message,A,'alert'));
D.drift.forEach(d=>h('div','schema drift: '+d.table+' ('+d.policy+'), '+d.fields+' field(s), run '+d.run_id,A,'alert'));
const TT=document.getElementById('tables');
D.tables.forEach(t=>{
  h('h2',t.name,TT);h('div',t.description,TT,'muted');const g=h('div',null,TT,'grid');
  const row=t.rules.filter(r=>r.level=='row'),tab=t.rules.filter(r=>r.level!='row');
  if(row.length)lineChart(g,'Pass rate per rule over the last '+t.runs.length+' run(s)',t.runs,row);
  if(tab.length)lineChart(g,'Table-level checks held (100%) or not (0%)',t.runs,tab);
  if(t.quarantine.length)barChart(g,'Quarantined records by rule (all runs)',t.quarantine.map(q=>[q.rule,q.count,'#d62728']));
  const nulls=t.profile.filter(p=>p.null_share>0).map(p=>[p.column,p.null_share,'#ff7f0e']);
  if(nulls.length)barChart(g,'Null share per column (latest profile)',nulls,pct);
  const num=t.profile.filter(p=>p.quantiles&&p.quantiles.length==5&&p.quantiles.every(v=>v!==null));
  if(num.length)boxPlot(g,'Numeric columns: 5-25-50-75-95% quantiles',num);
  t.profile.filter(p=>p.top.length).slice(0,4).forEach(p=>barChart(g,'Top values of '+p.column,p.top.map(v=>[v[0],v[1],'#2ca02c'])));
  if(t.declared.length){h('h3','Rules',TT);const tb=h('table',null,TT);const hr=h('tr',null,tb);['rule','severity','check','description'].forEach(x=>h('th',x,hr));
    t.declared.forEach(d=>{const r=h('tr',null,tb);[d.name,d.severity,d.rule,d.description].forEach(x=>h('td',x,r));});}
  if(t.profile.length){h('h3','Column profile (latest)',TT);const tb=h('table',null,TT);const hr=h('tr',null,tb);['column','type','rows','nulls','distinct~','min','max','mean','outliers'].forEach(x=>h('th',x,hr));
    t.profile.forEach(p=>{const r=h('tr',null,tb);[p.column,p.type,p.rows,pct(p.null_share),p.distinct,p.min,p.max,p.mean==null?'':Number(p.mean).toPrecision(4),p.outliers].forEach(x=>h('td',x==null?'':String(x),r));});}
  if(t.quarantine.length){h('h3','Sample quarantined records (PII masked)',TT);t.quarantine.forEach(q=>{h('div',q.rule+' ('+q.count+')',TT);q.samples.forEach(smp=>h('pre',JSON.stringify(smp),TT));});}
});
document.body.setAttribute('data-rendered','true');
document.body.setAttribute('data-charts',String(document.querySelectorAll('svg.chart').length));
})();
</script>
</body></html>
"""
