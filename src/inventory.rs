//! Who a host is: the inventory file (`--inventory FILE`) maps addresses
//! and CIDRs to a workload (node, namespace, pod, job, owner), so alerts,
//! incidents and `explain` can name the pod or batch job behind an
//! address. Lookups use the policy's prefix tries ([`CidrMap`]): the most
//! specific entry wins.
//!
//! Two formats, told apart by the first character of the file:
//! - CSV with a header line naming the columns (`address` — or `cidr`,
//!   `ip` — and any of `node`, `namespace`, `pod`, `job`, `owner`); `#`
//!   starts a comment line; fields may be quoted as jq's `@csv` writes them;
//! - JSON: an array of objects, or one object per line (`jq -c`), with the
//!   same keys.
//!
//! An address listed twice (a Slurm node shared by two jobs) gets both
//! values, joined by `,`. Every error names the file and the line. The
//! workload is never a metric label: the set of pods is unbounded.
//!
//! [`Inventory::parse`] is pure; [`Inventory::load`] reads the file (at
//! start and on SIGHUP, never per packet).

use crate::json::Obj;
use crate::policy::cidr::CidrMap;
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// Entries an inventory holds at most (a bound on what a file can make
/// the sensor allocate).
pub const MAX_ENTRIES: usize = 1_000_000;

/// What runs at an address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    pub node: Option<Box<str>>,
    pub namespace: Option<Box<str>>,
    pub pod: Option<Box<str>>,
    pub job: Option<Box<str>>,
    pub owner: Option<Box<str>>,
}

impl Workload {
    /// The fields by name, in the order they are written.
    fn fields(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("node", self.node.as_deref()),
            ("namespace", self.namespace.as_deref()),
            ("pod", self.pod.as_deref()),
            ("job", self.job.as_deref()),
            ("owner", self.owner.as_deref()),
        ]
    }

    fn fields_mut(&mut self) -> [&mut Option<Box<str>>; 5] {
        [
            &mut self.node,
            &mut self.namespace,
            &mut self.pod,
            &mut self.job,
            &mut self.owner,
        ]
    }

    /// The EVE object: the fields that are known.
    pub fn write(&self, o: &mut Obj<'_>) {
        for (key, value) in self.fields() {
            if let Some(v) = value {
                o.str(key, v);
            }
        }
    }

    /// For people: `pod ml/train-7 on gpu-07, job 4711, owner alice`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match (&self.namespace, &self.pod) {
            (Some(ns), Some(pod)) => parts.push(format!("pod {ns}/{pod}")),
            (None, Some(pod)) => parts.push(format!("pod {pod}")),
            (Some(ns), None) => parts.push(format!("namespace {ns}")),
            (None, None) => {}
        }
        if let Some(node) = &self.node {
            match parts.is_empty() {
                true => parts.push(format!("node {node}")),
                false => parts[0] = format!("{} on {node}", parts[0]),
            }
        }
        if let Some(job) = &self.job {
            parts.push(format!("job {job}"));
        }
        if let Some(owner) = &self.owner {
            parts.push(format!("owner {owner}"));
        }
        match parts.is_empty() {
            true => "-".to_string(),
            false => parts.join(", "),
        }
    }

    /// Adds what `other` says of the same address: a field both know with
    /// different values keeps both (`4711,4712`).
    fn merge(&mut self, other: Workload) {
        let Workload {
            node,
            namespace,
            pod,
            job,
            owner,
        } = other;
        for (mine, theirs) in self
            .fields_mut()
            .into_iter()
            .zip([node, namespace, pod, job, owner])
        {
            match (mine.as_deref(), theirs) {
                (_, None) => {}
                (None, Some(t)) => *mine = Some(t),
                (Some(m), Some(t)) if m.split(',').any(|v| v == &*t) => {}
                (Some(m), Some(t)) => *mine = Some(format!("{m},{t}").into()),
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.fields().iter().all(|(_, v)| v.is_none())
    }
}

/// A problem with an inventory file, at a line where there is one.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
}

/// Addresses and prefixes with their workloads; immutable once built (a
/// reload builds a new one and swaps it in whole).
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    map: CidrMap<Arc<Workload>>,
}

/// The inventory the sensor's writer reads and SIGHUP replaces.
pub type SharedInventory = Arc<arc_swap::ArcSwap<Inventory>>;

/// An inventory to share with the writer.
pub fn shared(inventory: Inventory) -> SharedInventory {
    Arc::new(arc_swap::ArcSwap::from_pointee(inventory))
}

/// Reads `path` again and swaps it in whole (SIGHUP); on an error the
/// inventory in force stays, as the rules do. The entries now in force.
pub fn reload(shared: &SharedInventory, path: &Path) -> Result<usize, InventoryError> {
    let inventory = Inventory::load(path)?;
    let entries = inventory.len();
    shared.store(Arc::new(inventory));
    Ok(entries)
}

impl Inventory {
    /// Entries (addresses and prefixes).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The workload at `addr`: the most specific entry holding it.
    pub fn lookup(&self, addr: IpAddr) -> Option<&Arc<Workload>> {
        self.map.longest(addr).map(|(_, w)| w)
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
            file: file.clone(),
            source,
        })?;
        Inventory::parse(&file, &text)
    }

    /// Parses an inventory; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Inventory, InventoryError> {
        let err = |line: usize, message: String| InventoryError::Syntax {
            file: file.to_string(),
            line,
            message,
        };
        let rows = match text.trim_start().chars().next() {
            Some('[') => json_array(text).map_err(|e| err(e.line(), e.to_string()))?,
            Some('{') => json_lines(text).map_err(|(line, m)| err(line, m))?,
            _ => csv(text).map_err(|(line, m)| err(line, m))?,
        };
        let mut inventory = Inventory::default();
        for (line, row) in rows {
            inventory.add(row).map_err(|m| err(line, m))?;
        }
        Ok(inventory)
    }

    fn add(&mut self, row: Row) -> Result<(), String> {
        if row.workload.is_empty() {
            return Err(format!("{}: no workload field is set", row.address.0));
        }
        let net = row.address.0;
        if let Some(known) = self.map.get_mut(&net) {
            Arc::make_mut(known).merge(row.workload);
            return Ok(());
        }
        if self.map.len() >= MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} entries"));
        }
        self.map.insert(net, Arc::new(row.workload));
        Ok(())
    }
}

/// An address or a CIDR, as the files write it.
#[derive(Clone, Copy, Debug)]
struct Net(IpNet);

impl std::str::FromStr for Net {
    type Err = String;

    fn from_str(s: &str) -> Result<Net, String> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Net(net));
        }
        s.parse::<IpAddr>()
            .map(|a| Net(IpNet::from(a)))
            .map_err(|_| format!("{s:?} is not an address or a CIDR"))
    }
}

impl<'de> serde::Deserialize<'de> for Net {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Net, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One entry of a file.
#[derive(Debug)]
struct Row {
    address: Net,
    workload: Workload,
}

/// An entry as JSON writes it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRow {
    #[serde(alias = "cidr", alias = "ip")]
    address: Net,
    node: Option<String>,
    namespace: Option<String>,
    pod: Option<String>,
    /// Slurm job ids are numbers when jq builds the object.
    job: Option<serde_json::Value>,
    owner: Option<String>,
}

impl<'de> serde::Deserialize<'de> for Row {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Row, D::Error> {
        let r = JsonRow::deserialize(d)?;
        let job = r.job.and_then(|v| match v {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        });
        Ok(Row {
            address: r.address,
            workload: Workload {
                node: field(r.node),
                namespace: field(r.namespace),
                pod: field(r.pod),
                job: field(job),
                owner: field(r.owner),
            },
        })
    }
}

/// An empty value is no value.
fn field(v: Option<String>) -> Option<Box<str>> {
    v.map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .map(String::into_boxed_str)
}

/// A JSON array of objects; each row is numbered by the line it ends on.
fn json_array(text: &str) -> Result<Vec<(usize, Row)>, serde_json::Error> {
    let rows: Vec<Row> = serde_json::from_str(text)?;
    // Lines of array elements are not kept by serde; entry-level errors
    // (an empty workload) name the element instead.
    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| (i + 1, r))
        .collect())
}

/// One JSON object per line (`jq -c`).
fn json_lines(text: &str) -> Result<Vec<(usize, Row)>, (usize, String)> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let row = serde_json::from_str(line).map_err(|e| (i + 1, e.to_string()))?;
        rows.push((i + 1, row));
    }
    Ok(rows)
}

/// The CSV columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    Address,
    Field(usize),
}

fn column(name: &str) -> Option<Column> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "address" | "cidr" | "ip" => Column::Address,
        "node" => Column::Field(0),
        "namespace" => Column::Field(1),
        "pod" => Column::Field(2),
        "job" => Column::Field(3),
        "owner" => Column::Field(4),
        _ => return None,
    })
}

/// CSV with a header line.
fn csv(text: &str) -> Result<Vec<(usize, Row)>, (usize, String)> {
    let mut header: Option<Vec<Column>> = None;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let fields = split_csv(line).map_err(|m| (n, m))?;
        match &header {
            None => header = Some(csv_header(&fields).map_err(|m| (n, m))?),
            Some(cols) => rows.push((n, csv_row(cols, fields).map_err(|m| (n, m))?)),
        }
    }
    Ok(rows)
}

fn csv_header(fields: &[String]) -> Result<Vec<Column>, String> {
    let mut cols = Vec::new();
    for name in fields {
        let c = column(name).ok_or_else(|| {
            format!(
                "unknown column {name:?}; columns: address (or cidr, ip), node, namespace, pod, job, owner"
            )
        })?;
        if cols.contains(&c) {
            return Err(format!("column {name:?} appears twice"));
        }
        cols.push(c);
    }
    if !cols.contains(&Column::Address) {
        return Err("the header has no address column (address, cidr or ip)".to_string());
    }
    Ok(cols)
}

fn csv_row(cols: &[Column], fields: Vec<String>) -> Result<Row, String> {
    if fields.len() != cols.len() {
        return Err(format!(
            "{} field(s), the header names {}",
            fields.len(),
            cols.len()
        ));
    }
    let mut address = None;
    let mut workload = Workload::default();
    for (col, value) in cols.iter().zip(fields) {
        match col {
            Column::Address => address = Some(value.parse::<Net>()?),
            Column::Field(k) => *workload.fields_mut()[*k] = field(Some(value)),
        }
    }
    let address = address.ok_or_else(|| "no address".to_string())?;
    Ok(Row { address, workload })
}

/// Splits one CSV line; fields may be quoted (`"a,b"`, `""` for a quote).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.trim().is_empty() && !was_quoted => {
                cur.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            (false, '"') => return Err("a quote inside an unquoted field".to_string()),
            (false, c) if was_quoted && !c.is_whitespace() => {
                return Err("text after a closing quote".to_string())
            }
            (false, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".to_string());
    }
    fields.push(cur);
    Ok(fields)
}

#[cfg(test)]
mod tests;
