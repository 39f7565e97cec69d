//! SQLite store: schema migrations, one transaction per write, node reservations in the row.
