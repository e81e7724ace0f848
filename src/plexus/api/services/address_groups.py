"""Address groups (``address-group``): named sets of CIDRs that security group rules name
as their remote side (``remote_address_group_id``). Each rule naming a group also
writes a use key under the group (``ag_use_key``), so the in-use check of a delete reads
the group's uses only, never the rules of the cloud; the delete holds the group's guard,
which a rule being created checks, so no rule slips in meanwhile. The ACL stages of
every chassis with a port whose groups name the group hold its CIDRs (scope ``ag``)."""

from __future__ import annotations

from plexus.api import errors, policy
from plexus.api.schemas.security_groups import ADDRESS_GROUP, addresses
from plexus.api.services.base import ResourceService, Writes, now
from plexus.api.services.security_groups import Missing, ag_use_key

COLLECTION = "address-groups"


def not_found(ident: str) -> Missing:
    """Neutron's AddressGroupNotFound."""
    return Missing(f"Address group {ident} could not be found.", "AddressGroupNotFound")


class AddressGroupService(ResourceService):
    """Neutron address groups."""

    resource = ADDRESS_GROUP

    def load(self, ctx, ident: str) -> tuple[dict, int]:
        """The group if the caller may see it; otherwise AddressGroupNotFound."""
        found = self.get(ident)
        if found is None or not self.visible(ctx, found[0]):
            raise not_found(ident)
        return found

    def usable(self, ctx, ident: str, project_id: str, w: Writes) -> None:
        """A rule of ``project_id`` may name the group: it exists and belongs to that
        project or the caller sees it (admins see all); pinned in ``w`` against a delete."""
        found = self.get(ident)
        if found is None or not (found[0]["project_id"] == project_id
                                 or self.visible(ctx, found[0])):
            raise not_found(ident)
        w.unguarded(COLLECTION, ident)
        w.expect(self.key(ident), found[1])

    def in_use(self, ident: str) -> bool:
        """Whether a rule names the group (one range read of its use keys)."""
        kvs, _ = self.s.store.range(ag_use_key(ident))
        return bool(kvs)

    def delete(self, ctx, ident, if_match=None):
        """Delete a group no rule names (409 AddressGroupInUse), holding its guard."""
        self.owned(ctx, self.load(ctx, ident)[0], "delete")
        with self.s.guarding(COLLECTION, ident):
            super().delete(ctx, ident, if_match)

    def plan_delete(self, ctx, obj, w):
        """In use while a rule names it."""
        if self.in_use(obj["id"]):
            raise errors.Conflict(f"Address group {obj['id']} is in use on one or more "
                                  f"security group rules.", type_name="AddressGroupInUse")

    def change_addresses(self, ctx, ident: str, body, add: bool) -> dict:
        """``PUT /address-groups/{id}/add_addresses`` and ``remove_addresses``: body
        ``{"addresses": [...]}``, answer ``{"address_group": {...}}``. Adding one already
        there is 400 AddressesAlreadyExist, removing one not there 404 AddressesNotFound;
        nothing is written then."""
        action = "add_addresses" if add else "remove_addresses"
        if not isinstance(body, dict) or set(body) != {"addresses"} \
                or not isinstance(body["addresses"], list):
            raise errors.BadRequest(f"Invalid input for operation: {action} requires a body "
                                    f"{{\"addresses\": [<ip or cidr>, ...]}}.",
                                    type_name="InvalidInput")
        try:
            given = addresses(body["addresses"])
        except ValueError as exc:
            raise errors.InvalidInput(str(exc)) from None

        def plan(attempt: int) -> dict:
            old, rev = self.load(ctx, ident)
            policy.enforce(ctx, action, policy.Target(old))
            have = set(old["addresses"])
            if add and have & set(given):
                raise errors.BadRequest(
                    f"Addresses {sorted(have & set(given))} already exist in the address "
                    f"group {ident}.", type_name="AddressesAlreadyExist")
            if not add and set(given) - have:
                raise Missing(f"Addresses {sorted(set(given) - have)} not found in the "
                              f"address group {ident}.", "AddressesNotFound")
            if not given:
                return old
            wanted = addresses(sorted(have | set(given)) if add else
                               sorted(have - set(given)))
            new = dict(old, addresses=wanted, updated_at=now(),
                       revision_number=old.get("revision_number", 0) + 1)
            w = Writes()
            w.expect(self.key(ident), rev)
            w.put(self.key(ident), new)
            self.s.commit(w)
            return new
        obj = self.s.retrying(plan)
        return {"address_group": self.view(ctx, obj)}
