//! The Prometheus text exposition format (version 0.0.4), written one way for every metric the
//! store, the server and the proxy expose at `/metrics`.
//!
//! Label values are escaped as the format requires (`\\`, `\"`, `\n`), so a value taken from an
//! object can never end a label or a line early.

use std::fmt::{self, Display, Write};

/// A metric family's type, as `# TYPE` states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// Appends metric families to a text buffer.
pub struct Exposition<'a> {
    out: &'a mut String,
}

impl<'a> Exposition<'a> {
    pub fn new(out: &'a mut String) -> Exposition<'a> {
        Exposition { out }
    }

    /// `# HELP` and `# TYPE` lines that start a family.
    pub fn family(&mut self, name: &str, kind: MetricType, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        let _ = writeln!(self.out, "{name}{} {value}", Labels(labels, None));
    }

    /// The samples of one histogram series: a cumulative `_bucket` per `(upper bound, count)`
    /// given (in increasing order), the `+Inf` bucket (`count`), `_sum` and `_count`.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        buckets: impl IntoIterator<Item = (f64, u64)>,
        sum: f64,
        count: u64,
    ) {
        for (le, cumulative) in buckets {
            let _ = writeln!(
                self.out,
                "{name}_bucket{} {cumulative}",
                Labels(labels, Some(&le.to_string()))
            );
        }
        let _ = writeln!(
            self.out,
            "{name}_bucket{} {count}",
            Labels(labels, Some("+Inf"))
        );
        let _ = writeln!(self.out, "{name}_sum{} {sum}", Labels(labels, None));
        let _ = writeln!(self.out, "{name}_count{} {count}", Labels(labels, None));
    }
}

/// `{a="1",b="2"}` (nothing when there are no labels), with `le` last when given.
struct Labels<'a>(&'a [(&'a str, &'a str)], Option<&'a str>);

impl Display for Labels<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let le = self.1.map(|le| ("le", le));
        let mut all = self.0.iter().copied().chain(le).peekable();
        if all.peek().is_none() {
            return Ok(());
        }
        f.write_char('{')?;
        for (i, (name, value)) in all.enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            write!(f, "{name}=\"")?;
            for c in value.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    c => f.write_char(c)?,
                }
            }
            f.write_char('"')?;
        }
        f.write_char('}')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_histograms_read_as_prometheus_text() {
        let mut out = String::new();
        let mut e = Exposition::new(&mut out);
        e.family(
            "jobs_total",
            MetricType::Counter,
            "Jobs run.\nTwo lines \\ here.",
        );
        e.sample("jobs_total", &[("queue", "a\"b\\c\nd")], 3);
        e.sample("up", &[], 1);
        e.family("latency_seconds", MetricType::Histogram, "Latency.");
        e.histogram(
            "latency_seconds",
            &[("route", "/x")],
            [(0.005, 1), (0.5, 2)],
            0.75,
            3,
        );
        assert_eq!(
            out,
            "# HELP jobs_total Jobs run.\\nTwo lines \\\\ here.\n\
             # TYPE jobs_total counter\n\
             jobs_total{queue=\"a\\\"b\\\\c\\nd\"} 3\n\
             up 1\n\
             # HELP latency_seconds Latency.\n\
             # TYPE latency_seconds histogram\n\
             latency_seconds_bucket{route=\"/x\",le=\"0.005\"} 1\n\
             latency_seconds_bucket{route=\"/x\",le=\"0.5\"} 2\n\
             latency_seconds_bucket{route=\"/x\",le=\"+Inf\"} 3\n\
             latency_seconds_sum{route=\"/x\"} 0.75\n\
             latency_seconds_count{route=\"/x\"} 3\n"
        );
    }
}
