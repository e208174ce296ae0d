//! The librdkafka C API calls the `rdkafka` crate does not wrap: the active controller id of the
//! last Metadata answer, and IncrementalAlterConfigs of one broker key.
//!
//! This is the crate's only `unsafe` code (`unsafe_code = "deny"` everywhere else, in
//! Cargo.toml): the functions here are safe to call, and each `unsafe` block says why it holds.
//!
//! IncrementalAlterConfigs goes through the C API because the rdkafka crate (0.39) wraps only the
//! legacy AlterConfigs, which replaces *all* of a broker's per-broker dynamic configs with the
//! given set (dropping e.g. dynamically installed keystores) and which tansu does not implement.
//! IncrementalAlterConfigs SET touches one key, as `kafka-configs.sh --alter` does.

// Calling C needs `unsafe`; this module is where the crate allows it.
#![allow(unsafe_code)]

use std::ffi::{c_char, CStr, CString};
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::bindings as rd;
use rdkafka::client::DefaultClientContext;

/// The active controller id from the Metadata answer librdkafka cached last (call it right after
/// `fetch_metadata`); `None` when the answer named none. The rdkafka crate exposes it only
/// through librdkafka's C API.
pub(super) fn cached_controller_id(admin: &AdminClient<DefaultClientContext>) -> Option<i32> {
    // SAFETY: the native handle lives as long as `admin`, which the caller borrows for the call;
    // a zero timeout only reads the cached answer.
    let controller = unsafe { rd::rd_kafka_controllerid(admin.inner().native_ptr(), 0) };
    (controller >= 0).then_some(controller)
}

/// Owns a librdkafka object and destroys it on drop.
struct Owned<T> {
    ptr: *mut T,
    destroy: unsafe extern "C" fn(*mut T),
}

impl<T> Owned<T> {
    fn new(ptr: *mut T, destroy: unsafe extern "C" fn(*mut T), what: &str) -> Result<Self, String> {
        if ptr.is_null() {
            Err(format!("librdkafka could not allocate {what}"))
        } else {
            Ok(Owned { ptr, destroy })
        }
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` is non-null, came from the matching librdkafka constructor, and is
        // destroyed exactly once.
        unsafe { (self.destroy)(self.ptr) }
    }
}

/// A C string from librdkafka, or `fallback` for NULL.
///
/// SAFETY: `ptr` is NULL or a NUL-terminated string valid for the duration of the call.
unsafe fn c_text(ptr: *const c_char, fallback: &str) -> String {
    if ptr.is_null() {
        fallback.to_string()
    } else {
        CStr::from_ptr(ptr).to_string_lossy().into_owned()
    }
}

/// IncrementalAlterConfigs of one broker key: SET to `value`, or DELETE (the dynamic override
/// goes, the static value from the file applies again) when `value` is `None`.
pub(super) fn incremental_alter_broker_config(
    admin: &AdminClient<DefaultClientContext>,
    broker_id: i32,
    key: &str,
    value: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    let rk = admin.inner().native_ptr();
    let name = CString::new(broker_id.to_string()).map_err(|e| e.to_string())?;
    let c_key = CString::new(key).map_err(|_| format!("{key} contains a NUL byte"))?;
    let c_value = value
        .map(|v| CString::new(v).map_err(|_| format!("value {v:?} contains a NUL byte")))
        .transpose()?;
    let op = if value.is_some() {
        rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET
    } else {
        rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_DELETE
    };
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);

    // SAFETY: every pointer passed below is either owned by an `Owned` guard that outlives the
    // call, a CString kept alive in this scope, or the client handle kept alive by `admin`.
    // librdkafka copies the resources and options it is given, so destroying them afterwards
    // (the guards) is the caller's job.
    unsafe {
        let resource = config_resource(&name, &c_key, op, c_value.as_deref())?;
        let options = admin_options(rk, timeout_ms)?;
        let queue = Owned::new(
            rd::rd_kafka_queue_new(rk),
            rd::rd_kafka_queue_destroy,
            "a result queue",
        )?;
        let mut resources = [resource.ptr];
        rd::rd_kafka_IncrementalAlterConfigs(
            rk,
            resources.as_mut_ptr(),
            resources.len(),
            options.ptr,
            queue.ptr,
        );
        // librdkafka always posts a result event, at the latest when the request times out.
        let event = Owned::new(
            rd::rd_kafka_queue_poll(queue.ptr, timeout_ms.saturating_add(5000)),
            rd::rd_kafka_event_destroy,
            "a result event (timed out)",
        )?;
        alter_result(&event)
    }
}

/// A BROKER config resource named `name` with one incremental entry.
///
/// SAFETY: the CStrings outlive the call; librdkafka copies them.
unsafe fn config_resource(
    name: &CStr,
    key: &CStr,
    op: rd::rd_kafka_AlterConfigOpType_t,
    value: Option<&CStr>,
) -> Result<Owned<rd::rd_kafka_ConfigResource_t>, String> {
    let resource = Owned::new(
        rd::rd_kafka_ConfigResource_new(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_BROKER,
            name.as_ptr(),
        ),
        rd::rd_kafka_ConfigResource_destroy,
        "a config resource",
    )?;
    let error = rd::rd_kafka_ConfigResource_add_incremental_config(
        resource.ptr,
        key.as_ptr(),
        op,
        value.map_or(std::ptr::null(), CStr::as_ptr),
    );
    if !error.is_null() {
        let message = c_text(rd::rd_kafka_error_string(error), "invalid config entry");
        rd::rd_kafka_error_destroy(error);
        return Err(message);
    }
    Ok(resource)
}

/// IncrementalAlterConfigs options with a request timeout.
///
/// SAFETY: `rk` is a live client handle.
unsafe fn admin_options(
    rk: *mut rd::rd_kafka_t,
    timeout_ms: i32,
) -> Result<Owned<rd::rd_kafka_AdminOptions_t>, String> {
    let options = Owned::new(
        rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
        ),
        rd::rd_kafka_AdminOptions_destroy,
        "admin options",
    )?;
    let mut errbuf = [0 as c_char; 512];
    let code = rd::rd_kafka_AdminOptions_set_request_timeout(
        options.ptr,
        timeout_ms,
        errbuf.as_mut_ptr(),
        errbuf.len(),
    );
    if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Err(c_text(errbuf.as_ptr(), "invalid request timeout"));
    }
    Ok(options)
}

/// The outcome carried by an IncrementalAlterConfigs result event: the request's error, else
/// the first resource's error.
///
/// SAFETY: `event` is a live event from the request's queue.
unsafe fn alter_result(event: &Owned<rd::rd_kafka_event_t>) -> Result<(), String> {
    let code = rd::rd_kafka_event_error(event.ptr);
    if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Err(c_text(
            rd::rd_kafka_event_error_string(event.ptr),
            "request failed",
        ));
    }
    let result = rd::rd_kafka_event_IncrementalAlterConfigs_result(event.ptr);
    if result.is_null() {
        return Err("librdkafka answered with an event of another type".to_string());
    }
    let mut count = 0usize;
    let results = rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut count);
    for i in 0..count {
        let resource = *results.add(i);
        let code = rd::rd_kafka_ConfigResource_error(resource);
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let name = c_text(rd::rd_kafka_err2name(code), "error");
            let detail = c_text(rd::rd_kafka_ConfigResource_error_string(resource), "");
            return Err(if detail.is_empty() {
                name
            } else {
                format!("{name}: {detail}")
            });
        }
    }
    Ok(())
}
