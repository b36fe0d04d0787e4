use sea_orm::entity::prelude::*;

/// A transaction whose customer has not arrived yet; columns as in `transactions`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "parked_transactions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub transaction_id: String,
    pub account_number: String,
    pub transaction_reference: String,
    pub transaction_datetime: Option<DateTimeUtc>,
    pub kind: String,
    pub amount_cents: i64,
    pub currency: String,
    pub branch_id: i64,
    pub description: String,
    pub source_partition: i32,
    pub source_offset: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
