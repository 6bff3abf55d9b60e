//! The Gateway service: the one front door of a split deployment.
//!
//! In the default one-process deployment (`boxoffice serve`) every service is mounted on one
//! router and there is nothing for a gateway to do, so this crate is still empty. When services
//! run as separate processes it will route `/api/v1/...` by prefix to Auth, Catalog and Booking
//! instances, balance across booking instances with health checks, keep SSE streams working, and
//! keep internal service-to-service routes unreachable from outside.
