//! The words of the owner daemon's objects (`org.banger.Daemon1.Vm`, `org.banger.Daemon1.Image`):
//! their property names, as `PropertiesChanged`, `InterfacesAdded` and `GetManagedObjects`
//! carry them.

words! {
    /// The properties of `org.banger.Daemon1.Vm`.
    VmProperty {
        /// `s`: 12 hex digits.
        Id => "Id",
        /// `s`: the VM's name.
        Name => "Name",
        /// `s`: the image it was made from.
        Image => "Image",
        /// `u`: virtual CPUs.
        Cpus => "Cpus",
        /// `u`: memory in MiB.
        MemoryMib => "MemoryMiB",
        /// `s`: a [`crate::wire::VmState`] word.
        State => "State",
        /// `s`: the guest's IPv4 address.
        Address => "Address",
        /// `s`: `qemu`, `firecracker` or "".
        Backend => "Backend",
        /// `s`: the VM's unit.
        Unit => "Unit",
        /// `x`: Unix seconds.
        CreatedAt => "CreatedAt",
        /// `s`: the pinned SSH host key, or "".
        HostKey => "HostKey",
    }
}

words! {
    /// The properties of `org.banger.Daemon1.Image`.
    ImageProperty {
        /// `s`: the image's name.
        Name => "Name",
        /// `t`: bytes stored.
        Bytes => "Bytes",
        /// `s`: SHA-256 of the kernel.
        KernelSha256 => "KernelSha256",
        /// `s`: SHA-256 of the initrd, or "".
        InitrdSha256 => "InitrdSha256",
        /// `s`: SHA-256 of the root filesystem, or "".
        RootfsSha256 => "RootfsSha256",
        /// `x`: Unix seconds.
        CreatedAt => "CreatedAt",
        /// `as`: the VMs made from it.
        UsedBy => "UsedBy",
    }
}
