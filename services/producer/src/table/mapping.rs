//! From a row of a source table to an event: which column feeds which field (by name, with
//! `--column field=column` overrides), and the same cleaning rules as the CSV ingest, so a table
//! and a file with the same data give the same events. A row that cannot be mapped is an
//! `Err` with a sentence naming the column, for the rejects log.

use bank_contract::pb::{Customer, Transaction};
use csv::StringRecord;

use bank_contract::time::timestamp;
use bank_csv::cleaning::{SlashDates, clean_text, parse_date};
use bank_csv::rows::{ColumnNames, Columns, RowRules, branch_of, clean_row};

/// Which events a table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Events {
    Transactions,
    Customers,
}

/// A field of the event: its name (also the default column) and whether a row needs it.
struct Field {
    name: &'static str,
    required: bool,
}

const fn field(name: &'static str, required: bool) -> Field {
    Field { name, required }
}

const TRANSACTION_FIELDS: &[Field] = &[
    field("account_number", true),
    field("amount", true),
    field("transaction_datetime", true),
    field("description", false),
    field("kind", false),
    field("transaction_reference", false),
    field("transaction_id", false),
    field("currency", false),
    field("branch_id", false),
];

const CUSTOMER_FIELDS: &[Field] = &[
    field("account_number", true),
    field("first_name", false),
    field("last_name", false),
    field("email", false),
    field("created_at", false),
    field("updated_at", false),
    field("branch_id", false),
];

impl Events {
    fn fields(self) -> &'static [Field] {
        match self {
            Events::Transactions => TRANSACTION_FIELDS,
            Events::Customers => CUSTOMER_FIELDS,
        }
    }
}

/// A column the source selects, and the field it feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub field: &'static str,
    pub column: String,
    required: bool,
}

/// An event made from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    Transaction(Transaction),
    Customer(Customer),
}

pub struct Mapping {
    events: Events,
    table: String,
    selected: Vec<Selected>,
    columns: Option<Columns>,
    derive_ids: bool,
    rules: RowRules,
}

/// Ids of rows without a `transaction_id` column: a function of the table and the row's id, so
/// a row published again (after a crash, or because it changed) keeps its id.
const TABLE_ROW_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x1b4e_28ba_2fa1_11d2_883f_0016_d3cc_427e);

impl Mapping {
    /// Resolves the fields against the table's columns (`table_columns`, matched
    /// case-insensitively); `overrides` are `field=column` pairs.
    pub fn new(
        events: Events,
        table: &str,
        table_columns: &[String],
        overrides: &[String],
        rules: RowRules,
    ) -> Result<Mapping, String> {
        let fields = events.fields();
        let mut chosen: Vec<(&Field, String)> =
            fields.iter().map(|f| (f, f.name.to_owned())).collect();
        for pair in overrides {
            let (name, column) = pair.split_once('=').ok_or_else(|| {
                format!("--column {pair:?}: expected FIELD=COLUMN, as in account_number=acct_no")
            })?;
            let slot = chosen
                .iter_mut()
                .find(|(f, _)| f.name == name.trim())
                .ok_or_else(|| {
                    let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                    format!(
                        "--column {pair:?}: {name:?} is not a field; the fields are {}",
                        names.join(", ")
                    )
                })?;
            slot.1 = column.trim().to_owned();
        }
        let find = |column: &str| {
            table_columns
                .iter()
                .find(|c| c.eq_ignore_ascii_case(column))
                .cloned()
        };
        let mut selected = Vec::new();
        for (f, column) in chosen {
            match find(&column) {
                Some(column) => selected.push(Selected {
                    field: f.name,
                    column,
                    required: f.required,
                }),
                None if f.required => {
                    return Err(format!(
                        "table {table} has no column {column:?} for {} (its columns: {}); map one with --column {}=COLUMN",
                        f.name,
                        table_columns.join(", "),
                        f.name
                    ));
                }
                None => {}
            }
        }
        let (columns, derive_ids) = match events {
            Events::Transactions => {
                let header =
                    StringRecord::from(selected.iter().map(|s| s.field).collect::<Vec<_>>());
                let columns = Columns::from_header(&header, &field_names())?;
                (
                    Some(columns),
                    !selected.iter().any(|s| s.field == "transaction_id"),
                )
            }
            Events::Customers => (None, false),
        };
        Ok(Mapping {
            events,
            table: table.to_owned(),
            selected,
            columns,
            derive_ids,
            rules,
        })
    }

    pub fn selected(&self) -> &[Selected] {
        &self.selected
    }

    /// The event of a row: `values` in the order of [`Mapping::selected`], `None` for NULL;
    /// `id` is the row's incrementing column.
    pub fn map(&self, values: &[Option<String>], id: i64) -> Result<Mapped, String> {
        for (value, selected) in values.iter().zip(&self.selected) {
            if value.is_none() && selected.required {
                return Err(format!(
                    "column {} ({}) is NULL",
                    selected.column, selected.field
                ));
            }
        }
        match (self.events, &self.columns) {
            (Events::Transactions, Some(columns)) => self.transaction(values, id, columns),
            _ => Ok(Mapped::Customer(self.customer(values)?)),
        }
    }

    fn transaction(
        &self,
        values: &[Option<String>],
        id: i64,
        columns: &Columns,
    ) -> Result<Mapped, String> {
        let record = StringRecord::from(
            values
                .iter()
                .map(|v| v.as_deref().unwrap_or(""))
                .collect::<Vec<_>>(),
        );
        let line = u64::try_from(id).unwrap_or_default();
        let mut tx =
            clean_row(&record, line, columns, &self.rules).map_err(|why| self.name_column(why))?;
        if self.derive_ids {
            let name = format!("{}|{id}", self.table);
            tx.transaction_id =
                uuid::Uuid::new_v5(&TABLE_ROW_NAMESPACE, name.as_bytes()).to_string();
        }
        Ok(Mapped::Transaction(tx))
    }

    fn customer(&self, values: &[Option<String>]) -> Result<Customer, String> {
        let text = |field: &str| -> Option<&str> {
            self.selected
                .iter()
                .position(|s| s.field == field)
                .and_then(|i| values.get(i)?.as_deref())
        };
        let time = |field: &str| -> Result<Option<prost_types::Timestamp>, String> {
            match text(field).map(clean_text).filter(|t| !t.is_empty()) {
                Some(raw) => parse_date(&raw, SlashDates::MonthFirst)
                    .map(|at| Some(timestamp(at)))
                    .map_err(|why| format!("{field}: {why}")),
                None => Ok(None),
            }
        };
        let account_number = clean_text(text("account_number").unwrap_or_default());
        if account_number.is_empty() {
            return Err("account_number is empty".into());
        }
        let branch_id = match text("branch_id").map(clean_text).filter(|t| !t.is_empty()) {
            Some(raw) => raw
                .parse::<u32>()
                .map_err(|_| format!("branch_id {raw:?} is not a non-negative integer"))?,
            None => branch_of(&account_number, self.rules.branches),
        };
        let customer = Customer {
            first_name: clean_text(text("first_name").unwrap_or_default()),
            last_name: clean_text(text("last_name").unwrap_or_default()),
            email: clean_text(text("email").unwrap_or_default()),
            created_at: time("created_at")?,
            updated_at: time("updated_at")?,
            branch_id,
            account_number,
        };
        bank_contract::validate::customer(&customer).map_err(|violation| violation.to_string())?;
        Ok(customer)
    }

    /// The cleaning rules name fields; a person fixing the table needs the column too.
    fn name_column(&self, why: String) -> String {
        match self
            .selected
            .iter()
            .find(|s| why.starts_with(s.field) && s.field != s.column)
        {
            Some(s) => format!("{why} (column {})", s.column),
            None => why,
        }
    }
}

/// The CSV cleaner's column names for a header made of field names.
fn field_names() -> ColumnNames {
    ColumnNames {
        account: "account_number".into(),
        amount: "amount".into(),
        date: "transaction_datetime".into(),
        description: "description".into(),
        kind: "kind".into(),
        reference: "transaction_reference".into(),
        id: "transaction_id".into(),
        currency: "currency".into(),
        branch: "branch_id".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RowRules {
        RowRules::standard()
    }

    fn columns(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn columns_map_by_name_with_overrides() {
        let table = columns(&[
            "id",
            "acct_no",
            "AMOUNT",
            "transaction_datetime",
            "kind",
            "updated_at",
        ]);
        let mapping = Mapping::new(
            Events::Transactions,
            "t",
            &table,
            &["account_number=acct_no".into()],
            rules(),
        )
        .expect("a mapping");
        let fields: Vec<&str> = mapping.selected().iter().map(|s| s.field).collect();
        assert_eq!(
            fields,
            ["account_number", "amount", "transaction_datetime", "kind"]
        );
        let values = [
            Some("ACC-1".to_owned()),
            Some("12.50".into()),
            Some("2026-12-01T10:00:00Z".into()),
            Some("withdrawal".into()),
        ];
        let Ok(Mapped::Transaction(tx)) = mapping.map(&values, 7) else {
            panic!("a transaction")
        };
        assert_eq!(
            (
                tx.account_number.as_str(),
                tx.amount_cents,
                tx.currency.as_str()
            ),
            ("ACC-1", 1_250, "USD")
        );
        let again = mapping.map(&values, 7).expect("the same row");
        assert_eq!(
            again,
            Mapped::Transaction(tx.clone()),
            "a row keeps its derived id"
        );
        let Ok(Mapped::Transaction(other)) = mapping.map(&values, 8) else {
            panic!("a transaction")
        };
        assert_ne!(
            other.transaction_id, tx.transaction_id,
            "another row, another id"
        );
    }

    #[test]
    fn a_row_that_cannot_be_mapped_says_which_column() {
        let table = columns(&["id", "acct_no", "amount", "transaction_datetime"]);
        let mapping = Mapping::new(
            Events::Transactions,
            "t",
            &table,
            &["account_number=acct_no".into()],
            rules(),
        )
        .expect("a mapping");
        let at = Some("2026-12-01T10:00:00Z".to_owned());
        let null = mapping
            .map(&[None, Some("1.00".into()), at.clone()], 1)
            .expect_err("NULL account");
        assert_eq!(null, "column acct_no (account_number) is NULL");
        let bad = mapping
            .map(&[Some("ACC-1".into()), Some("twelve".into()), at], 1)
            .expect_err("bad amount");
        assert!(bad.contains("twelve"), "{bad}");
        let missing = Mapping::new(
            Events::Transactions,
            "t",
            &columns(&["id", "amount"]),
            &[],
            rules(),
        );
        assert!(
            missing
                .err()
                .unwrap_or_default()
                .contains("map one with --column account_number=COLUMN")
        );
        let unknown = Mapping::new(
            Events::Transactions,
            "t",
            &table,
            &["acct=acct_no".into()],
            rules(),
        );
        assert!(
            unknown
                .err()
                .unwrap_or_default()
                .contains("\"acct\" is not a field")
        );
    }

    #[test]
    fn customers_map_with_their_times() {
        let table = columns(&["id", "account_number", "first_name", "email", "updated_at"]);
        let mapping =
            Mapping::new(Events::Customers, "c", &table, &[], rules()).expect("a mapping");
        let values = [
            Some(" ACC-9 ".to_owned()),
            Some("Ana".into()),
            None,
            Some("2026-12-01 18:14:52.265".into()),
        ];
        let Ok(Mapped::Customer(c)) = mapping.map(&values, 1) else {
            panic!("a customer")
        };
        assert_eq!(
            (
                c.account_number.as_str(),
                c.first_name.as_str(),
                c.email.as_str()
            ),
            ("ACC-9", "Ana", "")
        );
        assert_eq!(
            c.updated_at.map(|t| (t.seconds, t.nanos)),
            Some((1_796_148_892, 265_000_000))
        );
        let bad = mapping.map(&[Some("ACC-9".into()), None, None, Some("soon".into())], 1);
        assert!(bad.expect_err("a bad time").starts_with("updated_at: "));
    }
}
