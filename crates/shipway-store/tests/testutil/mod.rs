//! Helpers for the store suite: a fresh database per test (a SQLite file in a temp dir, or a new
//! PostgreSQL database created from `SHIPWAY_TEST_POSTGRES_URL`), and object builders.

use std::time::Duration;

use serde_json::json;
use shipway_model::{Key, Object};
use shipway_store::{Store, StoreOptions};

pub const POSTGRES_ENV: &str = "SHIPWAY_TEST_POSTGRES_URL";

/// One test's database. Dropping it removes it.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    /// For PostgreSQL: the admin URL and the database to drop afterwards.
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("data/shipway.db").display());
        TestDb {
            url,
            _dir: Some(dir),
            postgres: None,
        }
    }

    /// A new, empty database on the server named by `SHIPWAY_TEST_POSTGRES_URL`; `None` (after
    /// saying so) when the variable is not set.
    pub async fn postgres() -> Option<TestDb> {
        let Ok(admin) = std::env::var(POSTGRES_ENV) else {
            println!("SKIPPED (set {POSTGRES_ENV})");
            return None;
        };
        let name = format!("shipway_test_{}", uuid::Uuid::new_v4().simple());
        let url = with_database(&admin, &name);
        let create = format!("CREATE DATABASE {name}");
        let admin2 = admin.clone();
        // The sync client runs its own runtime, so it must not run on a tokio worker thread.
        tokio::task::spawn_blocking(move || {
            let mut client = postgres::Client::connect(&admin2, postgres::NoTls)
                .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_ENV}: {e}"));
            client.batch_execute(&create).expect("create test database");
        })
        .await
        .unwrap();
        Some(TestDb {
            url,
            _dir: None,
            postgres: Some((admin, name)),
        })
    }

    pub async fn open(&self) -> Store {
        self.open_with(StoreOptions::default()).await
    }

    pub async fn open_with(&self, options: StoreOptions) -> Store {
        Store::open_with(&self.url, options)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }
}

impl TestDb {
    /// Everything the database keeps, as text to grep: for SQLite every byte of every file in its
    /// directory (database, WAL, shared memory); for PostgreSQL every text column of every table,
    /// and `pg_dump`'s output when the tool is installed.
    pub async fn raw_dump(&self) -> String {
        if let Some(dir) = &self._dir {
            let mut out = Vec::new();
            let mut todo = vec![dir.path().to_path_buf()];
            while let Some(d) = todo.pop() {
                for entry in std::fs::read_dir(&d).expect("read test dir") {
                    let path = entry.expect("dir entry").path();
                    if path.is_dir() {
                        todo.push(path);
                    } else {
                        out.extend(std::fs::read(&path).expect("read database file"));
                    }
                }
            }
            return String::from_utf8_lossy(&out).into_owned();
        }
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            let mut out = String::new();
            for sql in [
                "SELECT data FROM objects",
                "SELECT object FROM changes",
                "SELECT message FROM audit",
                "SELECT value FROM pipeline_settings",
                "SELECT line FROM logs",
            ] {
                for row in client.query(sql, &[]).expect(sql) {
                    out.push_str(row.get::<_, &str>(0));
                    out.push('\n');
                }
            }
            if let Ok(dump) = std::process::Command::new("pg_dump").arg(&url).output() {
                assert!(
                    dump.status.success(),
                    "pg_dump: {}",
                    String::from_utf8_lossy(&dump.stderr)
                );
                out.push_str(&String::from_utf8_lossy(&dump.stdout));
            }
            out
        })
        .await
        .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.postgres.take() {
            // Best effort, on a plain thread (Drop may run inside the runtime).
            let _ = std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&admin, postgres::NoTls)?;
                client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            })
            .join();
        }
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The suite: each body runs once per backend. `store:` bodies take a fresh `Store`; `db:` bodies
/// take the `TestDb`, to open it several times or with options.
#[macro_export]
macro_rules! suite {
    (store: [$($s:ident),* $(,)?], db: [$($d:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $s() {
                    let db = $crate::testutil::TestDb::sqlite();
                    $crate::$s(db.open().await).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $d() {
                    let db = $crate::testutil::TestDb::sqlite();
                    $crate::$d(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $s() {
                    let Some(db) = $crate::testutil::TestDb::postgres().await else { return };
                    $crate::$s(db.open().await).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $d() {
                    let Some(db) = $crate::testutil::TestDb::postgres().await else { return };
                    $crate::$d(&db).await;
                }
            )*
        }
    };
}

pub fn obj(value: serde_json::Value) -> Object {
    serde_json::from_value(value).expect("test object")
}

/// An `apps/v1` Deployment with `spec.replicas` and labels `app=<name>` plus `labels`.
pub fn deployment(namespace: &str, name: &str, replicas: i64, labels: &[(&str, &str)]) -> Object {
    let mut o = obj(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"replicas": replicas},
    }));
    for (k, v) in labels {
        o.metadata.labels.insert(k.to_string(), v.to_string());
    }
    o
}

pub fn configmap(namespace: &str, name: &str, value: &str) -> Object {
    obj(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"value": value},
    }))
}

pub fn deployment_key(namespace: &str, name: &str) -> Key {
    Key::new("apps", "Deployment", namespace, name)
}

pub fn rv(o: &Object) -> u64 {
    o.resource_version()
        .expect("stored objects have a resourceVersion")
}

/// Long enough for anything that should happen "at once", short enough to fail quickly.
pub const PATIENCE: Duration = Duration::from_secs(10);

#[test]
fn with_database_replaces_only_the_path() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "t1"),
        "postgres://u:p@h:5432/t1?sslmode=disable"
    );
    assert_eq!(with_database("postgresql://h", "t1"), "postgresql://h/t1");
}
