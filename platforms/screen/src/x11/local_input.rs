//! Noticing the customer's own keyboard and mouse, so that the session can let the local user
//! win over remote control (pause injection for a moment, or end it on a hotkey).
//!
//! XInput2 raw events on the root window report every key press, button press and motion with
//! the slave device that produced it (`sourceid`). Input injected through XTest comes from the
//! server's "XTEST" slave devices; anything else is a person at the machine. Raw events reach
//! every client that selects them, whatever window has the focus and even while a grab is active.

use std::collections::HashMap;

use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xinput::{self, ConnectionExt as _};
use x11rb::rust_connection::RustConnection;

use crate::backend::BackendError;

use super::protocol;

/// Input seen since the last [`LocalInputWatcher::poll`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InputActivity {
    /// Key presses, button presses and motions from real devices (the local user).
    pub local: usize,
    /// The same from XTest devices (injected: ours, or another injecting program's).
    pub synthetic: usize,
}

/// Watches the local devices of an X11 display.
#[derive(Debug)]
pub struct LocalInputWatcher {
    conn: RustConnection,
    /// Device id → whether it is an XTest device.
    devices: HashMap<u16, bool>,
}

impl LocalInputWatcher {
    /// Connects to `display` (`None`: `$DISPLAY`); fails without XInput 2.
    pub fn connect(display: Option<&str>) -> Result<LocalInputWatcher, BackendError> {
        let (conn, screen_num) =
            RustConnection::connect(display).map_err(|e| BackendError::Unavailable(e.to_string()))?;
        let root = conn.setup().roots.get(screen_num).ok_or(BackendError::Unsupported("no such screen"))?.root;
        let version = conn.xinput_xi_query_version(2, 0).map_err(protocol)?.reply().map_err(protocol)?;
        if version.major_version < 2 {
            return Err(BackendError::Unsupported("XInput 2 missing"));
        }
        let raw = xinput::XIEventMask::RAW_KEY_PRESS
            | xinput::XIEventMask::RAW_BUTTON_PRESS
            | xinput::XIEventMask::RAW_MOTION;
        // Raw events once per master (XIAllMasterDevices); device changes only on XIAllDevices.
        let masks = [
            xinput::EventMask { deviceid: 1, mask: vec![raw] },
            xinput::EventMask { deviceid: 0, mask: vec![xinput::XIEventMask::HIERARCHY] },
        ];
        conn.xinput_xi_select_events(root, &masks).map_err(protocol)?.check().map_err(protocol)?;
        let mut watcher = LocalInputWatcher { conn, devices: HashMap::new() };
        watcher.load_devices()?;
        Ok(watcher)
    }

    /// The names of the slave devices and whether each counts as injected, for diagnostics.
    pub fn devices(&self) -> Result<Vec<(String, bool)>, BackendError> {
        let reply = self.conn.xinput_xi_query_device(0u16).map_err(protocol)?.reply().map_err(protocol)?;
        Ok(reply
            .infos
            .iter()
            .filter(|info| is_slave(info.type_))
            .map(|info| (String::from_utf8_lossy(&info.name).into_owned(), is_xtest(&info.name)))
            .collect())
    }

    /// Counts the input events received since the last call (never blocks).
    pub fn poll(&mut self) -> Result<InputActivity, BackendError> {
        let mut activity = InputActivity::default();
        while let Some(event) = self.conn.poll_for_event().map_err(protocol)? {
            let source = match event {
                Event::XinputRawKeyPress(e) => e.sourceid,
                Event::XinputRawButtonPress(e) => e.sourceid,
                Event::XinputRawMotion(e) => e.sourceid,
                Event::XinputHierarchy(_) => {
                    self.load_devices()?;
                    continue;
                }
                _ => continue,
            };
            if !self.devices.contains_key(&source) {
                self.load_devices()?;
            }
            // An unknown device is a real one: better to pause remote control needlessly than
            // to miss the customer.
            if self.devices.get(&source).copied().unwrap_or(false) {
                activity.synthetic += 1;
            } else {
                activity.local += 1;
            }
        }
        Ok(activity)
    }

    fn load_devices(&mut self) -> Result<(), BackendError> {
        let reply = self.conn.xinput_xi_query_device(0u16).map_err(protocol)?.reply().map_err(protocol)?;
        self.devices = reply.infos.iter().map(|info| (info.deviceid, is_xtest(&info.name))).collect();
        Ok(())
    }
}

fn is_slave(kind: xinput::DeviceType) -> bool {
    matches!(
        kind,
        xinput::DeviceType::SLAVE_POINTER | xinput::DeviceType::SLAVE_KEYBOARD | xinput::DeviceType::FLOATING_SLAVE
    )
}

/// XTest slave devices are named "<master> XTEST pointer" / "<master> XTEST keyboard".
fn is_xtest(name: &[u8]) -> bool {
    name.windows(5).any(|w| w == b"XTEST")
}
