use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "customers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_number: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub created_at: Option<DateTimeUtc>,
    pub branch_id: i64,
    /// See migration m0003: `updated_at` in microseconds, or `i64::MIN` when unversioned.
    pub version_micros: i64,
    pub source_partition: i32,
    pub source_offset: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
