-- What a VM needs to run and be reached: its address and MAC on the VM network, whether it has
-- its own root filesystem copy, the back end that last ran it, and its pinned SSH host key.
-- `state` is what the owner last asked for (running/stopped); what is true is read from systemd.
ALTER TABLE vms ADD COLUMN address TEXT;
ALTER TABLE vms ADD COLUMN mac TEXT;
ALTER TABLE vms ADD COLUMN has_rootfs INTEGER NOT NULL DEFAULT 0;
ALTER TABLE vms ADD COLUMN backend TEXT NOT NULL DEFAULT '';
ALTER TABLE vms ADD COLUMN host_key TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX vms_address ON vms(address);
ALTER TABLE images ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
