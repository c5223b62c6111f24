//! Medians, spreads, percentiles, the result table and the machine-readable lines.

use std::fmt::Write as _;

/// Median, minimum and maximum of some samples.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Summary { median: median_sorted(&v), min: v[0], max: v[v.len() - 1] })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({ "median": round(self.median), "min": round(self.min), "max": round(self.max) })
    }

    fn text(&self) -> String {
        format!("{} ({}–{})", num(self.median), num(self.min), num(self.max))
    }
}

fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The nearest-rank percentile `p` (0-100) of `samples`.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// A number with as many decimals as its size deserves.
pub fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn round(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// What a row is judged by.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The median of the paired ratios eic/reference is at least this.
    RatioAtLeast(f64),
    /// The median of the paired ratios eic/reference is at most this.
    RatioAtMost(f64),
    /// The median of the paired differences eic - reference is at most this (row's unit).
    AddedAtMost(f64),
    /// The median of eic's samples is at most this (row's unit).
    AtMost(f64),
    /// Reported for information.
    None,
}

impl Target {
    fn text(&self, unit: &str) -> String {
        match *self {
            Target::RatioAtLeast(x) => format!("ratio ≥ {x}"),
            Target::RatioAtMost(x) => format!("ratio ≤ {x}"),
            Target::AddedAtMost(x) => format!("added ≤ {x} {unit}"),
            Target::AtMost(x) => format!("≤ {x} {unit}"),
            Target::None => "-".into(),
        }
    }
}

/// One measured figure: eic's samples and the reference's, paired run by run.
#[derive(Debug, Clone)]
pub struct Row {
    pub case: &'static str,
    /// Short machine name, e.g. `upload_throughput`.
    pub metric: &'static str,
    /// What it is, for the table.
    pub what: String,
    pub unit: &'static str,
    /// What the reference column is.
    pub reference_is: &'static str,
    pub eic: Vec<f64>,
    /// Same length as `eic` (paired), or empty when there is no reference.
    pub reference: Vec<f64>,
    pub target: Target,
}

impl Row {
    fn ratios(&self) -> Vec<f64> {
        self.eic
            .iter()
            .zip(&self.reference)
            .filter(|(_, r)| **r != 0.0)
            .map(|(e, r)| e / r)
            .collect()
    }

    fn added(&self) -> Vec<f64> {
        self.eic.iter().zip(&self.reference).map(|(e, r)| e - r).collect()
    }

    /// Whether the target is met (None: no target).
    pub fn met(&self) -> Option<bool> {
        let ratio = Summary::of(&self.ratios()).map(|s| s.median);
        let added = Summary::of(&self.added()).map(|s| s.median);
        let eic = Summary::of(&self.eic).map(|s| s.median);
        match self.target {
            Target::RatioAtLeast(x) => ratio.map(|r| r >= x),
            Target::RatioAtMost(x) => ratio.map(|r| r <= x),
            Target::AddedAtMost(x) => added.map(|a| a <= x),
            Target::AtMost(x) => eic.map(|e| e <= x),
            Target::None => None,
        }
    }

    /// `BENCH {...}`: one line of JSON per row.
    pub fn bench_line(&self) -> String {
        let s = |v: &[f64]| Summary::of(v).map(|s| s.json());
        let value = serde_json::json!({
            "case": self.case,
            "metric": self.metric,
            "unit": self.unit,
            "runs": self.eic.len(),
            "eic": s(&self.eic),
            "ref": s(&self.reference),
            "ref_is": self.reference_is,
            "ratio": s(&self.ratios()),
            "added": s(&self.added()),
            "target": self.target.text(self.unit),
            "met": self.met(),
        });
        format!("BENCH {value}")
    }
}

/// The human-readable table: median (min–max) of each column.
pub fn table(rows: &[Row]) -> String {
    let header = ["case", "figure", "unit", "eic", "reference", "ratio", "added", "target", "met"];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for row in rows {
        let text = |v: &[f64]| Summary::of(v).map_or("-".into(), |s| s.text());
        let reference = if row.reference.is_empty() {
            "-".to_string()
        } else {
            format!("{} [{}]", text(&row.reference), row.reference_is)
        };
        lines.push(vec![
            row.case.to_string(),
            row.what.clone(),
            row.unit.to_string(),
            text(&row.eic),
            reference,
            text(&row.ratios()),
            text(&row.added()),
            row.target.text(row.unit),
            match row.met() {
                Some(true) => "met".into(),
                Some(false) => "NOT MET".into(),
                None => "-".into(),
            },
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let cells: Vec<String> =
            line.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}", w = *w)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
        }
    }
    out
}
