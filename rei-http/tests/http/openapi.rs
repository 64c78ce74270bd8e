//! The OpenAPI document against the routes and the responses.
