//! The central store: one sea-orm connection to SQLite (embedded default) or PostgreSQL.

pub mod due;
pub mod entities;
pub mod handoff;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use chrono::{DateTime, SubsecRound, Utc};
use herald_migrations::{Migrator, MigratorTrait};
use sea_orm::{
    Condition, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
    sea_query::{Alias, Expr, ExprTrait, Func, IntoColumnRef, IntoTableRef, Query, UpdateStatement},
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};

use crate::config::StorageSettings;

pub async fn connect(settings: &StorageSettings) -> anyhow::Result<DatabaseConnection> {
    open(settings, settings.max_connections, SqliteSynchronous::Full).await
}

async fn open(
    settings: &StorageSettings,
    max_connections: u32,
    synchronous: SqliteSynchronous,
) -> anyhow::Result<DatabaseConnection> {
    let url = settings.effective_database_url();
    let mut options = ConnectOptions::new(url.clone());
    options
        .max_connections(max_connections)
        .sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(30));
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("cannot create data directory {}", settings.data_dir.display()))?;
        options.map_sqlx_sqlite_opts(move |o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(synchronous)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
        });
    }
    let db = Database::connect(options)
        .await
        .with_context(|| format!("cannot open the database at {}", redact(&url)))?;
    Ok(db)
}

/// Begins the transactions that lease deliveries to a worker, and commits them without
/// waiting for the disk.
///
/// A lease lost to a power cut is a lease that lapsed: its deliveries are claimed again and
/// sent under the same idempotency keys, as after a worker that died. And it cannot be lost
/// once anything written after it is durable, because both databases make their log durable
/// in order: a later durable commit (the batch's record) takes the lease with it. So the
/// claim need not wait for an fsync of its own, which on SQLite was 15–60 ms of each claim.
/// On PostgreSQL each such transaction sets `synchronous_commit` off for itself; SQLite
/// cannot change it inside a transaction, so there the claims have a connection of their own
/// opened with `synchronous = NORMAL`.
///
/// On SQLite a claim also reads its due rows before it takes the write lock, so a record or a
/// publish goes on writing while it reads (a claim's read of 5,000 rows was 37 ms of a 65 ms
/// write lock). Claims in one process take turns (`ClaimTurn`) from that read to their commit,
/// so two never read the same due rows; each update still names the state it read, so a row a
/// record, a receipt or an operator moved in between is left alone, as on PostgreSQL, whose
/// claim locks only the queue rows it reads.
#[derive(Clone)]
pub struct LeaseWriter {
    db: DatabaseConnection,
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// A claim's turn among this process's claims on SQLite, held until it commits (none is
/// needed on PostgreSQL, where `FOR UPDATE … SKIP LOCKED` keeps concurrent claims apart).
pub struct ClaimTurn {
    _held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl LeaseWriter {
    /// `main` is the hub's connection, whose database this one writes to.
    pub async fn connect(settings: &StorageSettings, main: &DatabaseConnection) -> anyhow::Result<Self> {
        let url = settings.effective_database_url();
        // An in-memory SQLite database exists only for its own connections.
        if is_postgres(main) || url.contains(":memory:") || url.contains("mode=memory") {
            return Ok(Self {
                db: main.clone(),
                turn: Arc::default(),
            });
        }
        // SQLite writes one transaction at a time, so one connection is all claims can use;
        // the pool then also hands the write lock from one claim to the next without the
        // busy handler's sleeps.
        let db = open(settings, 1, SqliteSynchronous::Normal).await?;
        Ok(Self {
            db,
            turn: Arc::default(),
        })
    }

    /// Reads a claim's due rows with `selection` (an aggregate for `JsonRows::read`) and begins
    /// the transaction that leases them: the read is that transaction's first statement on
    /// PostgreSQL, and comes before it, in this claim's turn, on SQLite.
    pub async fn read_then_begin<T: serde::de::DeserializeOwned>(
        &self,
        selection: sea_orm::Statement,
    ) -> anyhow::Result<(ClaimTurn, DatabaseTransaction, Vec<T>)> {
        if is_postgres(&self.db) {
            let txn = begin_write(&self.db).await?;
            txn.execute_unprepared("SET LOCAL synchronous_commit TO OFF")
                .await?;
            let rows = JsonRows::read(&txn, selection).await?;
            return Ok((ClaimTurn { _held: None }, txn, rows));
        }
        let held = Arc::clone(&self.turn).lock_owned().await;
        let rows: Vec<T> = JsonRows::read(&self.db, selection).await?;
        // Nothing due: a deferred transaction, which takes no lock, so an idle claim loop's
        // polls never hold up a writer.
        let txn = if rows.is_empty() {
            self.db.begin().await?
        } else {
            begin_write(&self.db).await?
        };
        Ok((ClaimTurn { _held: Some(held) }, txn, rows))
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// The PostgreSQL advisory lock migrations run under ("MIGR"; any constant no other lock of
/// Herald's uses).
const MIGRATION_LOCK: i64 = 0x4D49_4752;

/// Brings the schema up to date. Several instances may start at once on one PostgreSQL: the
/// migrations run in one transaction under an advisory lock, so one instance migrates while
/// the others wait and then find nothing left to do, and an upgrade that fails part-way leaves
/// the schema as it was. Unguarded, two instances created the same table at once and one of
/// them failed to start.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    if !is_postgres(db) {
        return Migrator::up(db, None).await.context("database migration failed");
    }
    let txn = db.begin().await?;
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        .await?;
    Migrator::up(&txn, None)
        .await
        .context("database migration failed")?;
    txn.commit().await?;
    Ok(())
}

/// A transaction that will write. On SQLite it takes the write lock at `BEGIN`, so two writers
/// never both read and then collide on upgrade; PostgreSQL ignores the option.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, sea_orm::DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// A transaction that only reads: a read that must see one snapshot, or that sets a planner
/// option for its own statements (`SET LOCAL`).
pub async fn begin_read(db: &DatabaseConnection) -> Result<DatabaseTransaction, sea_orm::DbErr> {
    db.begin_with_options(TransactionOptions {
        access_mode: Some(sea_orm::AccessMode::ReadOnly),
        ..Default::default()
    })
    .await
}

pub fn is_postgres(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// Timestamps are kept to the microsecond, the finest both databases store, so a value reads
/// back exactly as written (the audit chain hashes them).
pub fn store_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

pub async fn ping(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    db.ping().await
}

/// Ids per `IN (…)` list: well under both databases' bind-parameter limits.
pub const ID_CHUNK: usize = 1000;

/// `column` is one of `ids`, however many there are. The ids go as one JSON array that the
/// database unpacks (`json_each` on SQLite, `json_array_elements_text` on PostgreSQL): a batch
/// of 10,000 is one statement with one value, not ten statements with a thousand placeholders
/// each, every one of which the driver converts and binds and the database plans.
pub fn among<'a>(
    backend: DbBackend,
    column: impl IntoColumnRef,
    ids: impl IntoIterator<Item = &'a str>,
) -> Expr {
    Expr::col(column).in_subquery(id_list(backend, ids))
}

/// `SELECT value FROM` the ids, unpacked by the database from one JSON value (see `among`).
pub fn id_list<'a>(
    backend: DbBackend,
    ids: impl IntoIterator<Item = &'a str>,
) -> sea_orm::sea_query::SelectStatement {
    let list = serde_json::Value::from(ids.into_iter().collect::<Vec<_>>()).to_string();
    let unpacked = match backend {
        DbBackend::Postgres => Func::cust("json_array_elements_text").arg(Func::cast_as(list, "json")),
        _ => Func::cust("json_each").arg(list),
    };
    let mut select = Query::select();
    select.column("value").from_function(unpacked, "ids");
    select
}

/// `column` holds every word of `terms`, each as plain text (`%` and `_` too): `strpos` on
/// PostgreSQL, `instr` on SQLite. Both search bytes; `LIKE '%…%'` matched Chinese text
/// character by character and cost about ten times as much a page (measured on PostgreSQL
/// over 1,000 pages of 2 kB).
pub fn holds_every_word(
    backend: DbBackend,
    column: impl IntoColumnRef + Clone,
    terms: &crate::domain::search::SearchTerms,
) -> sea_orm::Condition {
    let position = match backend {
        DbBackend::Postgres => "strpos",
        _ => "instr",
    };
    terms.words().iter().fold(sea_orm::Condition::all(), |all, word| {
        all.add(
            Func::cust(position)
                .arg(Expr::col(column.clone()))
                .arg(word.as_str())
                .gt(0),
        )
    })
}

/// Values for a hand-written statement, each placeholder made as its value is added, in the
/// order they appear in the text: `$n` on PostgreSQL, `?` on SQLite. SQLite takes `$n` for a
/// named parameter and looks each name up at prepare time, which for a thousand-row `VALUES`
/// list cost four times the update itself.
pub struct Binds {
    backend: DbBackend,
    values: Vec<sea_orm::Value>,
}

impl Binds {
    pub fn new(backend: DbBackend) -> Self {
        Self {
            backend,
            values: Vec::new(),
        }
    }

    /// Adds a value; returns its placeholder.
    pub fn add(&mut self, value: impl Into<sea_orm::Value>) -> String {
        self.values.push(value.into());
        match self.backend {
            DbBackend::Postgres => format!("${}", self.values.len()),
            _ => "?".to_owned(),
        }
    }

    pub fn statement(self, sql: String) -> sea_orm::Statement {
        sea_orm::Statement::from_sql_and_values(self.backend, sql, self.values)
    }
}

/// Many rows read as one JSON text, an array with one element per row, instead of as rows the
/// driver turns into owned values one at a time. On SQLite each row also crosses from the
/// connection's thread to the caller's: 5,000 claimed deliveries took 65 ms as rows and 48 ms
/// as text, and 5,000 targets 90–120 ms as rows, of which the query itself is 10 ms.
pub struct JsonRows {
    backend: DbBackend,
}

impl JsonRows {
    pub fn new(backend: DbBackend) -> Self {
        Self { backend }
    }

    /// A JSON array of the SQL expressions `items`.
    pub fn array<S: AsRef<str>>(&self, items: impl IntoIterator<Item = S>) -> String {
        let function = match self.backend {
            DbBackend::Postgres => "json_build_array",
            _ => "json_array",
        };
        let items: Vec<String> = items.into_iter().map(|item| item.as_ref().to_owned()).collect();
        format!("{function}({})", items.join(", "))
    }

    /// Every row's `element` in `order_by` order (SQL; empty: the rows' own), as one text.
    pub fn aggregate(&self, element: &str, order_by: &str) -> String {
        let order_by = if order_by.is_empty() {
            String::new()
        } else {
            format!(" ORDER BY {order_by}")
        };
        match self.backend {
            DbBackend::Postgres => format!("json_agg({element}{order_by})::text"),
            _ => format!("json_group_array({element}{order_by})"),
        }
    }

    /// The `element` of every row of `table` that meets `condition`, in `order_by` order, as
    /// one `aggregate`: a statement for `read`.
    pub fn select(
        &self,
        table: impl IntoTableRef,
        element: &str,
        order_by: &str,
        condition: Condition,
    ) -> sea_orm::Statement {
        let mut select = Query::select();
        select
            .expr(Expr::cust(self.aggregate(element, order_by)))
            .from(table)
            .cond_where(condition);
        self.backend.build(&select)
    }

    /// Runs `update` on the rows of `table` whose `id` is one of `ids` and that meet
    /// `condition`, and returns the `id` of every row it changed.
    ///
    /// PostgreSQL returns them from the update itself, aggregated in the same statement. Rows an
    /// update returns cross from SQLite's thread one at a time, so SQLite updates under a
    /// savepoint: when every one of `ids` changed (a worker's record, as a rule) they are the
    /// answer, and nothing is read. Otherwise it rolls back to the savepoint, reads the ids
    /// that meet the condition as one text, and updates them, all under the exclusive lock of
    /// the write transaction (`begin_write`, required), so the read stays true. A record of
    /// 5,000 outcomes: 43–90 ms returning rows, 45–57 ms reading first (stop 25), and the
    /// 5–13 ms read saved when all changed.
    pub async fn update_among(
        txn: &DatabaseTransaction,
        table: impl IntoTableRef + Clone,
        mut update: UpdateStatement,
        ids: &[&str],
        condition: Condition,
    ) -> anyhow::Result<Vec<String>> {
        let backend = txn.get_database_backend();
        let json = Self::new(backend);
        let condition = Condition::all()
            .add(among(backend, Alias::new("id"), ids.iter().copied()))
            .add(condition);
        update.table(table.clone());
        if backend == DbBackend::Postgres {
            update.cond_where(condition).returning_col(Alias::new("id"));
            let built = backend.build(&update);
            let sql = format!(
                "WITH changed AS ({}) SELECT {} FROM changed",
                built.sql,
                json.aggregate("id", "")
            );
            let statement = sea_orm::Statement::from_sql_and_values(
                backend,
                sql,
                built.values.map(|values| values.0).unwrap_or_default(),
            );
            return Self::read(txn, statement).await;
        }
        update.cond_where(condition.clone());
        txn.execute_unprepared("SAVEPOINT update_among").await?;
        // The rows changed are some of `ids`, so as many as there are ids (distinct) is all.
        let changed = txn.execute(&update).await?.rows_affected();
        if changed == ids.len() as u64 {
            txn.execute_unprepared("RELEASE update_among").await?;
            return Ok(ids.iter().map(|&id| id.to_owned()).collect());
        }
        txn.execute_unprepared("ROLLBACK TO update_among").await?;
        txn.execute_unprepared("RELEASE update_among").await?;
        let ids: Vec<String> = Self::read(txn, json.select(table, "id", "", condition)).await?;
        let changed = txn.execute(&update).await?.rows_affected();
        anyhow::ensure!(
            changed == ids.len() as u64,
            "the update changed {changed} rows where {} met its condition: was it run outside a write transaction?",
            ids.len()
        );
        Ok(ids)
    }

    /// Runs `statement`, whose one column is an `aggregate`, and decodes its elements. No rows
    /// (an empty list on SQLite, NULL on PostgreSQL) is an empty list; a text that does not
    /// decode is an error, never an empty list.
    pub async fn read<T: serde::de::DeserializeOwned>(
        db: &impl ConnectionTrait,
        statement: sea_orm::Statement,
    ) -> anyhow::Result<Vec<T>> {
        let text: Option<String> = match db.query_one_raw(statement).await? {
            Some(row) => row.try_get_by_index(0)?,
            None => None,
        };
        match text {
            Some(text) => serde_json::from_str(&text).context("rows read as JSON do not decode"),
            None => Ok(Vec::new()),
        }
    }
}
