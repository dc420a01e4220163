//! (being written)

use actix_web::web;

/// Register this module's routes.
pub fn configure(_cfg: &mut web::ServiceConfig) {}
