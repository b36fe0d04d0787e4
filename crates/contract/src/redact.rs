//! URLs fit for logs and error messages: a password in the user part, or in a password-like
//! query parameter, is replaced by `***`. Every service names its database and registry by URL
//! in logs and errors, and those URLs may carry credentials.

/// `url` with any password replaced. The password may itself hold '@', ':', ',' or '/' when not
/// percent-encoded: the host starts after the last '@' before the query string.
pub fn url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority_end, query) = match rest.find('?') {
        Some(at) => (at, Some(&rest[at + 1..])),
        None => (rest.len(), None),
    };
    let before_query = &rest[..authority_end];
    let (userinfo, location) = match before_query.rfind('@') {
        Some(at) => (Some(&before_query[..at]), &before_query[at + 1..]),
        None => (None, before_query),
    };
    let mut out = format!("{scheme}://");
    if let Some(userinfo) = userinfo {
        let user = userinfo.split(':').next().unwrap_or_default();
        out.push_str(&format!("{user}:***@"));
    }
    out.push_str(location);
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if is_secret_param(key) => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// Query parameters that carry secrets (libpq's and sqlx's names, tokens).
fn is_secret_param(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "password" || key == "sslpassword" || key.ends_with("secret") || key.ends_with("token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_whatever_they_hold() {
        assert_eq!(
            url("postgres://bank:s3cret@db:5432/bank"),
            "postgres://bank:***@db:5432/bank"
        );
        assert_eq!(url("sqlite://bank.db"), "sqlite://bank.db");
        for (given, secret) in [
            ("postgres://bank:p@ss:w,rd@db:5432/bank", "p@ss:w,rd"),
            ("postgres://bank:a/b@c@db/bank?sslmode=require", "a/b@c"),
            (
                "postgres://db/bank?user=bank&password=hunter2&sslmode=disable",
                "hunter2",
            ),
            ("postgres://bank@db/bank?sslpassword=k3y", "k3y"),
            (
                "https://key:s3cr3t@registry.example/apis/ccompat/v7",
                "s3cr3t",
            ),
        ] {
            let shown = url(given);
            assert!(!shown.contains(secret), "{given} -> {shown}");
        }
        assert_eq!(
            url("postgres://db/bank?user=bank&password=x&sslmode=disable"),
            "postgres://db/bank?user=bank&password=***&sslmode=disable"
        );
    }
}
