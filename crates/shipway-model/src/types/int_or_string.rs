//! Kubernetes' `IntOrString` (`maxSurge: 1` or `maxSurge: 25%`, `targetPort: 8080` or
//! `targetPort: http`), with the percent rounding of `GetScaledValueFromIntOrPercent`.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

impl IntOrString {
    /// The value against `total`: an integer as it is, `N%` as N percent of `total`, rounded up
    /// or down as the caller needs (Kubernetes rounds maxSurge up and maxUnavailable down).
    pub fn scaled_value(&self, total: i64, round_up: bool) -> Result<i64, String> {
        match self {
            IntOrString::Int(n) if *n >= 0 => Ok(*n),
            IntOrString::Int(n) => Err(format!("{n} is not a non-negative integer")),
            IntOrString::String(s) => {
                let pct: i64 = s
                    .strip_suffix('%')
                    .and_then(|p| p.parse().ok())
                    .filter(|p| *p >= 0)
                    .ok_or_else(|| {
                        format!("{s:?} is neither an integer nor a percentage like \"25%\"")
                    })?;
                let scaled = pct.saturating_mul(total);
                Ok(if round_up {
                    scaled.saturating_add(99) / 100
                } else {
                    scaled / 100
                })
            }
        }
    }
}

impl From<i64> for IntOrString {
    fn from(n: i64) -> IntOrString {
        IntOrString::Int(n)
    }
}

impl From<&str> for IntOrString {
    fn from(s: &str) -> IntOrString {
        IntOrString::String(s.to_string())
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(n) => write!(f, "{n}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrString::Int(n) => s.serialize_i64(*n),
            IntOrString::String(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IntOrString, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<IntOrString, E> {
                Ok(IntOrString::Int(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<IntOrString, E> {
                i64::try_from(n)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom(format!("{n} is too large")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::String(s.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_like_kubernetes() {
        let pct = IntOrString::from("25%");
        assert_eq!(pct.scaled_value(10, true), Ok(3));
        assert_eq!(pct.scaled_value(10, false), Ok(2));
        assert_eq!(IntOrString::from(2).scaled_value(10, true), Ok(2));
        assert_eq!(IntOrString::from("100%").scaled_value(3, false), Ok(3));
        assert_eq!(IntOrString::from("0%").scaled_value(3, true), Ok(0));
        assert_eq!(
            IntOrString::from("x%").scaled_value(3, false),
            Err("\"x%\" is neither an integer nor a percentage like \"25%\"".into())
        );
        assert!(IntOrString::from(-1).scaled_value(3, false).is_err());
    }

    #[test]
    fn reads_and_writes_both_forms() {
        let v: Vec<IntOrString> = serde_json::from_str(r#"[8080, "http"]"#).unwrap();
        assert_eq!(v, [IntOrString::Int(8080), IntOrString::from("http")]);
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"[8080,"http"]"#);
        assert!(serde_json::from_str::<IntOrString>("true").is_err());
    }
}
