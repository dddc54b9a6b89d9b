//! Route patterns and the router: exact (`/hello`), prefix (`/api/...`) and
//! named segments (`/users/:id`). The most specific matching route wins.

use std::fmt;
use std::sync::Arc;

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A parsed route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    template: Arc<str>,
    segments: Vec<Segment>,
    /// Ends in `/...`: matches the path and everything below it.
    wildcard: bool,
}

/// A route pattern that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid route `{route}`: {reason}")]
pub struct RouteError {
    pub route: String,
    pub reason: String,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.template)
    }
}

impl Route {
    /// Parses `/`, `/hello`, `/api/...`, `/...`, `/users/:id/posts`.
    pub fn parse(template: &str) -> Result<Route, RouteError> {
        let err = |reason: &str| RouteError {
            route: template.to_string(),
            reason: reason.to_string(),
        };
        if !template.starts_with('/') {
            return Err(err(
                "routes start with `/` (e.g. \"/hello\" or \"/api/...\")",
            ));
        }
        let (body, wildcard) = match template.strip_suffix("/...") {
            Some(body) => (body, true),
            None => (template, false),
        };
        let mut segments = Vec::new();
        let mut names = Vec::new();
        for seg in body.split('/').skip(1) {
            if seg.is_empty() {
                if body.len() > 1 {
                    return Err(err("empty segment (`//` or a trailing `/`)"));
                }
                continue;
            }
            if seg.contains("...") {
                return Err(err("`...` may only end a route, as `/prefix/...`"));
            }
            if let Some(name) = seg.strip_prefix(':') {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(err("a parameter is `:name` with letters, digits or `_`"));
                }
                if names.contains(&name) {
                    return Err(err(&format!("parameter `:{name}` appears twice")));
                }
                names.push(name);
                segments.push(Segment::Param(name.to_string()));
            } else {
                if seg.contains(['?', '#', '*', ' ']) {
                    return Err(err("segments may not contain `?`, `#`, `*` or spaces"));
                }
                segments.push(Segment::Literal(seg.to_string()));
            }
        }
        Ok(Route {
            template: template.into(),
            segments,
            wildcard,
        })
    }

    /// Whether the route has a parameter segment `:name`.
    pub fn has_param(&self, name: &str) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Param(p) if p == name))
    }

    pub fn template(&self) -> &str {
        &self.template
    }

    /// The template as a shared string, for labels that outlive the route.
    pub fn shared_template(&self) -> Arc<str> {
        self.template.clone()
    }

    /// The route's shape with parameter names erased: two routes with the
    /// same shape can never be told apart.
    pub fn shape(&self) -> String {
        let mut s = String::new();
        for seg in &self.segments {
            s.push('/');
            match seg {
                Segment::Literal(l) => s.push_str(l),
                Segment::Param(_) => s.push(':'),
            }
        }
        if self.wildcard {
            s.push_str("/...");
        }
        if s.is_empty() {
            s.push('/');
        }
        s
    }

    /// Specificity: more segments first, then literals over parameters,
    /// then exact over prefix.
    fn rank(&self) -> (usize, usize, bool) {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        (self.segments.len(), literals, !self.wildcard)
    }

    /// Matches `path`, returning the parameters and the split between the
    /// matched prefix and the rest (CGI's SCRIPT_NAME and PATH_INFO).
    pub fn matches<'p>(&self, path: &'p str) -> Option<Match<'p>> {
        let mut params = Vec::new();
        let mut rest = path;
        for seg in &self.segments {
            let r = rest.strip_prefix('/')?;
            let end = r.find('/').unwrap_or(r.len());
            let (part, tail) = r.split_at(end);
            match seg {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) if !part.is_empty() => params.push((name.clone(), part)),
                Segment::Param(_) => return None,
            }
            rest = tail;
        }
        let exact_rest = rest.is_empty() || (rest == "/" && self.segments.is_empty());
        if !self.wildcard && !exact_rest {
            return None;
        }
        if self.wildcard && !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        let script_len = path.len() - rest.len();
        Some(Match {
            params,
            script_name: &path[..script_len],
            path_info: rest,
        })
    }
}

/// What a successful match yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match<'p> {
    pub params: Vec<(String, &'p str)>,
    /// The part of the path the route's literal and parameter segments matched.
    pub script_name: &'p str,
    /// What follows it (for prefix routes).
    pub path_info: &'p str,
}

/// Routes of many targets (function indices), most specific first.
#[derive(Debug, Clone, Default)]
pub struct Router {
    entries: Vec<(Route, usize)>,
}

/// The result of routing a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed<'r, 'p> {
    pub target: usize,
    pub route: &'r Route,
    pub found: Match<'p>,
}

impl Router {
    /// Builds a router; `Err` names the first two routes with the same shape.
    pub fn new(routes: Vec<(Route, usize)>) -> Result<Router, (usize, usize)> {
        for (i, (a, _)) in routes.iter().enumerate() {
            for (j, (b, _)) in routes.iter().enumerate().skip(i + 1) {
                if a.shape() == b.shape() {
                    return Err((i, j));
                }
            }
        }
        let mut entries = routes;
        entries.sort_by_key(|(r, _)| std::cmp::Reverse(r.rank()));
        Ok(Router { entries })
    }

    /// The most specific route matching `path`.
    pub fn route<'r, 'p>(&'r self, path: &'p str) -> Option<Routed<'r, 'p>> {
        self.entries.iter().find_map(|(route, target)| {
            route.matches(path).map(|found| Routed {
                target: *target,
                route,
                found,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[&str]) -> Router {
        Router::new(
            routes
                .iter()
                .enumerate()
                .map(|(i, r)| (Route::parse(r).unwrap(), i))
                .collect(),
        )
        .unwrap()
    }

    fn target(r: &Router, path: &str) -> Option<usize> {
        r.route(path).map(|m| m.target)
    }

    #[test]
    fn exact_routes() {
        let r = router(&["/hello", "/"]);
        assert_eq!(target(&r, "/hello"), Some(0));
        assert_eq!(target(&r, "/"), Some(1));
        assert_eq!(target(&r, "/hello/"), None);
        assert_eq!(target(&r, "/hellox"), None);
        assert_eq!(target(&r, "/other"), None);
    }

    #[test]
    fn prefix_routes_split_script_name_and_path_info() {
        let r = router(&["/api/..."]);
        let m = r.route("/api/users/7").unwrap();
        assert_eq!(m.found.script_name, "/api");
        assert_eq!(m.found.path_info, "/users/7");
        assert_eq!(r.route("/api").unwrap().found.path_info, "");
        assert_eq!(target(&r, "/apis"), None, "prefixes match whole segments");
        let all = router(&["/..."]);
        assert_eq!(all.route("/x/y").unwrap().found.path_info, "/x/y");
        assert_eq!(all.route("/").unwrap().found.path_info, "/");
    }

    #[test]
    fn longest_most_specific_route_wins() {
        let r = router(&[
            "/...",
            "/api/...",
            "/api/users/:id",
            "/api/users/me",
            "/api/users/:id/...",
        ]);
        assert_eq!(target(&r, "/other"), Some(0));
        assert_eq!(target(&r, "/api/x"), Some(1));
        assert_eq!(target(&r, "/api/users/42"), Some(2));
        assert_eq!(
            target(&r, "/api/users/me"),
            Some(3),
            "a literal beats a parameter"
        );
        assert_eq!(target(&r, "/api/users/42/posts"), Some(4));
        assert_eq!(target(&r, "/api/users"), Some(1));
    }

    #[test]
    fn parameters_are_captured() {
        let r = router(&["/users/:id/posts/:post"]);
        let m = r.route("/users/ann/posts/9").unwrap();
        assert_eq!(
            m.found.params,
            vec![("id".into(), "ann"), ("post".into(), "9")]
        );
        assert_eq!(
            target(&r, "/users//posts/9"),
            None,
            "parameters are never empty"
        );
    }

    #[test]
    fn same_shape_conflicts() {
        let parse = |s: &str| Route::parse(s).unwrap();
        assert_eq!(
            Router::new(vec![
                (parse("/a/:x"), 0),
                (parse("/b"), 1),
                (parse("/a/:y"), 2)
            ])
            .unwrap_err(),
            (0, 2)
        );
        assert!(Router::new(vec![(parse("/a"), 0), (parse("/a/..."), 1)]).is_ok());
    }

    #[test]
    fn bad_patterns() {
        for bad in [
            "hello", "/a//b", "/a/", "/a/.../b", "/:", "/:a/:a", "/a b", "/x*",
        ] {
            assert!(Route::parse(bad).is_err(), "{bad} should be rejected");
        }
        for good in ["/", "/...", "/a/...", "/:id", "/a-b_c.d/:x_1"] {
            assert!(Route::parse(good).is_ok(), "{good} should parse");
        }
    }
}
