//! Listing parameters as Ironic reads them (`limit`, `marker`, `sort_key`, `sort_dir`, `fields`,
//! `detail`), and collection bodies with their `next` link.

use super::Ctx;
use super::error::ApiError;
use super::extract::Query;
use super::microversion::FIELDS_SELECTOR;
use serde_json::Value;

/// Parses `limit` (positive, capped at the API's maximum page).
pub fn limit(q: &Query) -> Result<Option<usize>, ApiError> {
    match q.get("limit") {
        None => Ok(Some(MAX_PAGE)),
        Some(l) => {
            let n: i64 = l.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid input for field/attribute limit. Value: {l}. Wrong type. Expected 'int', got 'str'"
                ))
            })?;
            if n <= 0 {
                return Err(ApiError::bad_request("Limit must be positive"));
            }
            Ok(Some((n as usize).min(MAX_PAGE)))
        }
    }
}

/// Largest page a listing returns (Ironic's `max_limit`).
pub const MAX_PAGE: usize = 1000;

/// Sort direction parameter.
pub fn sort_dir(q: &Query) -> Result<crate::db::SortDir, ApiError> {
    match q.get("sort_dir").unwrap_or("asc") {
        "asc" => Ok(crate::db::SortDir::Asc),
        "desc" => Ok(crate::db::SortDir::Desc),
        other => Err(ApiError::bad_request(format!(
            "Invalid sort direction: {other}. Acceptable values are 'asc' or 'desc'"
        ))),
    }
}

/// Sort key parameter, checked against what the store can sort by.
pub fn sort_key(q: &Query, allowed: &[&str]) -> Result<String, ApiError> {
    let k = q.get("sort_key").unwrap_or("id");
    if !allowed.contains(&k) {
        return Err(ApiError::bad_request(format!("The sort_key value \"{k}\" is an invalid field for sorting")));
    }
    Ok(k.to_string())
}

/// `fields` parameter: a comma-separated list, checked against `valid` (needs API 1.8).
pub fn fields(ctx: &Ctx, q: &Query, valid: &dyn Fn(&str) -> Option<u32>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(f) = q.get("fields") else { return Ok(None) };
    if !ctx.allows(FIELDS_SELECTOR) {
        return Err(ApiError::not_acceptable());
    }
    let mut out = Vec::new();
    for name in f.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match valid(name) {
            None => return Err(ApiError::bad_request(format!("Field {name} is not a valid field."))),
            Some(min) if !ctx.allows(min) => return Err(ApiError::not_acceptable()),
            Some(_) => out.push(name.to_string()),
        }
    }
    Ok(Some(out))
}

/// A `next` link for a page that came back full.
pub fn next_link(ctx: &Ctx, path: &str, args: &[(&str, String)], limit: usize, marker: &str) -> String {
    let mut s = format!("{}/v1/{path}?", ctx.base);
    for (k, v) in args {
        s.push_str(&format!("{k}={v}&"));
    }
    s.push_str(&format!("limit={limit}&marker={marker}"));
    s
}

/// The `limit`, `marker` (a UUID), `sort_key` and `sort_dir` of a listing, as Ironic's
/// collections read them.
pub fn page(q: &Query, sortable: &[&str], unsortable: &[&str]) -> Result<crate::db::Page, ApiError> {
    let marker = match q.get("marker") {
        Some(m) => {
            m.parse::<uuid::Uuid>().map_err(|_| ApiError::bad_request(format!("Expected a UUID but received {m}.")))?;
            Some(m.to_string())
        }
        None => None,
    };
    let key = q.get("sort_key").unwrap_or("id");
    if unsortable.contains(&key) {
        return Err(ApiError::bad_request(format!("The sort_key value {key} is an invalid field for sorting")));
    }
    if !sortable.contains(&key) {
        return Err(ApiError::bad_request(format!("The sort_key value \"{key}\" is an invalid field for sorting")));
    }
    Ok(crate::db::Page { sort_key: key.to_string(), sort_dir: sort_dir(q)?, limit: limit(q)?, marker })
}

/// `?fields=a,b` as a list (no version or name checks).
pub fn field_list(q: &Query) -> Option<Vec<String>> {
    q.get("fields").map(|f| f.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
}

/// Ironic's `get_request_return_fields`: `fields` or `detail` (not both), else the defaults.
pub fn return_fields(
    q: &Query,
    defaults: &[&str],
    detail_allowed: bool,
) -> Result<(Option<Vec<String>>, Option<bool>), ApiError> {
    let detail = q.bool("detail")?;
    if let Some(d) = detail {
        if !detail_allowed {
            return Err(ApiError::bad_request(format!(
                "Invalid query parameter ?detail={} received.",
                if d { "True" } else { "False" }
            )));
        }
    }
    let fields = field_list(q);
    if fields.is_some() && detail == Some(true) {
        return Err(ApiError::bad_request("Can not specify ?detail=True and fields in the same request."));
    }
    if fields.is_none() && detail != Some(true) {
        return Ok((Some(defaults.iter().map(|s| s.to_string()).collect()), detail));
    }
    Ok((fields, detail))
}

/// Keeps only `fields` (and `links`) of a rendered object; unknown names are Ironic's 400.
pub fn sanitize(obj: &mut Value, fields: Option<&[String]>) -> Result<(), ApiError> {
    let Some(fields) = fields else { return Ok(()) };
    let Some(m) = obj.as_object_mut() else { return Ok(()) };
    let invalid: Vec<&str> = fields.iter().filter(|f| !m.contains_key(f.as_str())).map(|s| s.as_str()).collect();
    if !invalid.is_empty() {
        return Err(ApiError::bad_request(format!("Field(s) \"{}\" are not valid", invalid.join(", "))));
    }
    m.retain(|k, _| k == "links" || fields.iter().any(|f| f == k));
    Ok(())
}

/// A collection body `{name: items, next?}` with Ironic's `next` link when the page is full.
pub fn collection(
    ctx: &Ctx,
    name: &str,
    items: Vec<Value>,
    markers: &[String],
    limit: Option<usize>,
    path: &str,
    args: &[(&str, String)],
) -> Value {
    let mut m = serde_json::Map::new();
    let full = limit.is_some_and(|l| l > 0 && markers.len() == l);
    m.insert(name.into(), Value::Array(items));
    if let (true, Some(last), Some(l)) = (full, markers.last(), limit) {
        m.insert("next".into(), Value::String(next_link(ctx, path, args, l, last)));
    }
    Value::Object(m)
}

/// Orders and pages a small in-memory listing (chassis, portgroups) as the store pages the
/// large ones: stable sort by `key` (rows come in id order), after the `marker` row, `limit`.
pub fn paginate<T>(
    mut rows: Vec<T>,
    page: &crate::db::Page,
    key: impl Fn(&T, &str) -> Option<String>,
    uuid_of: impl Fn(&T) -> String,
    kind: &str,
) -> Result<Vec<T>, ApiError> {
    if page.sort_key != "id" {
        rows.sort_by_key(|r| key(r, &page.sort_key));
    }
    if page.sort_dir == crate::db::SortDir::Desc {
        rows.reverse();
    }
    if let Some(m) = &page.marker {
        let i = rows
            .iter()
            .position(|r| uuid_of(r) == *m)
            .ok_or_else(|| ApiError::not_found(format!("{kind} {m} could not be found.")))?;
        rows.drain(..=i);
    }
    if let Some(l) = page.limit {
        rows.truncate(l);
    }
    Ok(rows)
}
