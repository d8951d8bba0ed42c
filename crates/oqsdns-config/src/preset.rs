//! The guide's per-domain tables (手順3, p.4), compiled in, and how configured routes apply to them.

use serde::Deserialize;

use crate::{Area, Domain, ProbeName, RouteConfig, ServerAddr};

const EAST: &str = include_str!("../../../config/presets/east.toml");
const WEST: &str = include_str!("../../../config/presets/west.toml");

/// Where a route of the effective table comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOrigin {
    /// The built-in table of an area.
    Preset(Area),
    /// A `[[route]]` of the configuration.
    Config,
}

/// One line of the effective routing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// A short name for logs and status: `nw-base`, `ngn`, or the route's first domain.
    pub name: String,
    /// The domains this route answers, with every name under them.
    pub domains: Vec<Domain>,
    /// Servers in order of preference.
    pub servers: Vec<ServerAddr>,
    /// Health-probe questions for these servers (`. NS` when none is configured).
    pub names: Vec<ProbeName>,
    /// Where the line comes from.
    pub origin: RouteOrigin,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    route: Vec<RouteConfig>,
}

/// The built-in NW-base servers of an area, for `area = "auto"` and `oqsdns check`.
pub fn nw_base_servers(area: Area) -> Vec<ServerAddr> {
    preset_routes(area)
        .into_iter()
        .filter(|r| r.name == "nw-base")
        .flat_map(|r| r.servers)
        .collect()
}

/// The built-in routes of an area, as in the guide.
pub fn preset_routes(area: Area) -> Vec<Route> {
    let text = match area {
        Area::East => EAST,
        Area::West => WEST,
        Area::Auto | Area::None => return Vec::new(),
    };
    let file: PresetFile = toml::from_str(text).expect("built-in preset parses");
    file.route
        .into_iter()
        .map(|r| into_route(r, RouteOrigin::Preset(area)))
        .collect()
}

fn into_route(route: RouteConfig, origin: RouteOrigin) -> Route {
    let name = route.name.unwrap_or_else(|| route.domains[0].to_string());
    let names = if route.names.is_empty() {
        vec![". NS".parse().expect("built-in probe")]
    } else {
        route.names
    };
    Route {
        name,
        domains: route.domains,
        servers: route.servers,
        names,
        origin,
    }
}

/// The area's table with the configured routes added; a configured domain replaces the preset's
/// entry for the same domain, and a preset route left with no domain is dropped.
pub fn effective_routes(area: Area, configured: &[RouteConfig]) -> Vec<Route> {
    let overridden = |d: &Domain| configured.iter().any(|r| r.domains.contains(d));
    let mut routes: Vec<Route> = preset_routes(area)
        .into_iter()
        .filter_map(|mut route| {
            route.domains.retain(|d| !overridden(d));
            (!route.domains.is_empty()).then_some(route)
        })
        .collect();
    routes.extend(
        configured
            .iter()
            .cloned()
            .map(|r| into_route(r, RouteOrigin::Config)),
    );
    routes
}
